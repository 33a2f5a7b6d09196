// Package single tests the promise "one file is a deployment": bin/gcnserve
// copied alone into an empty directory, started with an empty environment,
// serves the embedded Karate model and returns PyTorch's scores.
package single

import (
	"context"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/test/internal/realserver"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

func TestLoneBinaryVersionSaysEmbedded(t *testing.T) {
	dir := t.TempDir()
	bin := realserver.Copy(t, realserver.Binary(t), dir)
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
	bin := realserver.Copy(t, realserver.Binary(t), dir)
	p := realserver.Start(t, bin, dir, []string{}, freeAddr(t))
	t.Logf("started to SERVING in %v", p.WaitServing(t, 20*time.Second))
	if !strings.Contains(p.Log(), "embedded karate model") {
		t.Errorf("log does not say it serves the embedded model:\n%s", p.Log())
	}

	conn := realserver.Dial(t, p.Addr)
	defer conn.Close()
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
