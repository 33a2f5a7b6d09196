// Package single tests the promise "one file is a deployment": gcnserve as
// 'make build' builds it (internal/servertest), copied alone into an empty
// directory and started with an empty environment, serves the embedded
// Karate model and returns PyTorch's scores.
package single

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

func TestLoneBinaryVersionSaysEmbedded(t *testing.T) {
	dir := t.TempDir()
	bin := servertest.Copy(t, servertest.Binary(t), dir)
	cmd := exec.Command(bin, "--version")
	cmd.Dir, cmd.Env = dir, []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gcnserve --version: %v\n%s", err, out)
	}
	if s := string(out); !strings.HasPrefix(s, "gcnserve ") || !strings.Contains(s, "onnxruntime 1.29.0 embedded)") {
		t.Errorf("gcnserve --version = %q; want \"gcnserve <version> (... onnxruntime 1.29.0 embedded)\"", s)
	}
}

// TestLoneBinaryServesKarate: no model file, no library, no HOME, no PATH:
// only the binary.
func TestLoneBinaryServesKarate(t *testing.T) {
	dir := t.TempDir()
	bin := servertest.Copy(t, servertest.Binary(t), dir)
	p := servertest.Launch(t, servertest.Options{Binary: bin, Dir: dir, EmptyEnv: true})
	t.Logf("started to SERVING in %v", p.WaitServing(t, 20*time.Second))
	if !strings.Contains(p.Log(), "karate model embedded in the binary") {
		t.Errorf("log does not say it serves the embedded model:\n%s", p.Log())
	}

	conn := servertest.Dial(t, p.Addr)
	client := gcnpb.NewGCNServiceClient(conn)
	fixtures := golden.Load(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate"))
	for _, fx := range fixtures {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := client.ProcessGraph(ctx, fx.Request)
		cancel()
		if err != nil {
			t.Fatalf("%s: ProcessGraph: %v", fx.Name, err)
		}
		for i, n := range fx.Request.GetNodes() {
			got, ok := res.GetNodeScores()[n.GetId()]
			if !ok || math.Abs(float64(got-fx.Scores[i])) > 1e-5 {
				t.Errorf("%s: node %s: score %v (present %v), PyTorch %v", fx.Name, n.GetId(), got, ok, fx.Scores[i])
			}
		}
	}

	// Nothing was written beside the binary.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"gcnserve"}) {
		t.Errorf("working directory holds %v after serving; want only the binary", names)
	}
}

// TestStartupTime measures exec to SERVING for the lone binary (library from
// the embedded copy via memfd) and for the same binary pointed at the
// library on disk (--ort-lib), GCNSERVE_STARTUP_RUNS times each (default 3);
// docs/BENCHMARKS.md quotes bench/deploy.sh's longer run.
func TestStartupTime(t *testing.T) {
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("GCNSERVE_STARTUP_RUNS")); err == nil && v > 0 {
		runs = v
	}
	dir := t.TempDir()
	bin := servertest.Copy(t, servertest.Binary(t), dir)
	lib := testenv.ORTLibrary(t)
	median := func(args ...string) time.Duration {
		var ds []time.Duration
		for range runs {
			p := servertest.Launch(t, servertest.Options{Binary: bin, Dir: dir, EmptyEnv: true, Args: args})
			ds = append(ds, p.WaitServing(t, 20*time.Second))
			p.Signal(t, syscall.SIGKILL)
			<-p.Exited()
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	embedded, disk := median(), median("--ort-lib", lib)
	t.Logf("exec to SERVING, median of %d: embedded ORT (memfd) %v, ORT from disk %v", runs, embedded.Round(time.Millisecond), disk.Round(time.Millisecond))
	if embedded > 5*time.Second {
		t.Errorf("lone binary took %v to serve, want well under 5s", embedded)
	}
}
