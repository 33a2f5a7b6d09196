// Package parity proves that gcnserve computes what PyTorch computed.
//
// It re-runs scripts/export_onnx.py (train, export, write golden fixtures
// from PyTorch's outputs), serves each exported model with the real server
// on a loopback port, sends every fixture through the full gRPC path and
// compares. A change on either side that breaks agreement fails here. It
// also checks that training on Cora reaches the paper's accuracy.
package parity

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/server"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// tolerance is the largest difference from PyTorch a served probability may
// show: float32 sums in a different order, nothing more.
const tolerance = 1e-5

// export is one run of scripts/export_onnx.py.
type export struct {
	model, fixtures string
	accuracy        float64
	err             error
}

var exports sync.Map // argument string -> *onceExport

type onceExport struct {
	once sync.Once
	export
}

// runExport runs the export script with args (once per distinct args in
// this test binary) into a fresh directory.
func runExport(t *testing.T, name string, args ...string) export {
	t.Helper()
	python := testenv.Python(t)
	root := testenv.RepoRoot(t)
	key := strings.Join(args, " ")
	v, _ := exports.LoadOrStore(key, &onceExport{})
	e := v.(*onceExport)
	e.once.Do(func() {
		dir, err := exportDir(name)
		if err != nil {
			e.err = err
			return
		}
		e.model, e.fixtures = filepath.Join(dir, "model.onnx"), filepath.Join(dir, "fixtures")
		argv := append([]string{filepath.Join(root, "scripts", "export_onnx.py"),
			"--out", e.model, "--fixtures", e.fixtures}, args...)
		cmd := exec.Command(python, argv...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			e.err = fmt.Errorf("export_onnx.py %s: %v\n%s\n%s", key, err, out, stderr.Bytes())
			return
		}
		e.accuracy, e.err = lastAccuracy(out)
	})
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.export
}

// exportRoot holds the exports. It lives as long as the test binary, since
// several tests share one export; TestMain removes it.
var exportRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gcnserve-parity-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exportRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func exportDir(name string) (string, error) {
	dir := filepath.Join(exportRoot, name)
	return dir, os.MkdirAll(dir, 0o755)
}

// lastAccuracy parses the script's last stdout line, test_accuracy=0.XXXX.
func lastAccuracy(out []byte) (float64, error) {
	var last string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	v, ok := strings.CutPrefix(last, "test_accuracy=")
	if !ok {
		return 0, fmt.Errorf("last line %q, want test_accuracy=...", last)
	}
	return strconv.ParseFloat(v, 64)
}

// serveModel runs the real server on a loopback port with model.
func serveModel(t *testing.T, model string) gcnpb.GCNServiceClient {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ModelPath = model
	cfg.ORTLibrary = testenv.ORTLibrary(t)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, ready) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	conn, err := grpc.NewClient(addr.String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(256<<20), grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return gcnpb.NewGCNServiceClient(conn)
}

// checkFixtures sends every fixture in dir to client and compares with
// PyTorch.
func checkFixtures(t *testing.T, client gcnpb.GCNServiceClient, dir string) {
	t.Helper()
	for _, fx := range golden.Load(t, dir) {
		t.Run(fx.Name, func(t *testing.T) {
			req := proto.Clone(fx.Request).(*gcnpb.GraphData)
			req.IncludePredictions = true
			res, err := client.ProcessGraph(context.Background(), req)
			if err != nil {
				t.Fatalf("ProcessGraph: %v", err)
			}
			if len(res.Predictions) != len(req.Nodes) || len(res.NodeScores) != len(req.Nodes) {
				t.Fatalf("got %d predictions and %d scores, want %d", len(res.Predictions), len(res.NodeScores), len(req.Nodes))
			}
			var probs, scores []float32
			for _, p := range res.Predictions {
				probs = append(probs, p.Probabilities...)
				scores = append(scores, res.NodeScores[p.Id])
			}
			dp := golden.MaxAbsDiff(probs, fx.FlatProbabilities())
			ds := golden.MaxAbsDiff(scores, fx.Scores)
			t.Logf("%d nodes, %d edges: max |served - PyTorch| probabilities %.2g, scores %.2g",
				len(req.Nodes), len(req.Edges), dp, ds)
			if dp > tolerance || ds > tolerance {
				t.Errorf("max abs diff from PyTorch: probabilities %.3g, scores %.3g; want <= %g", dp, ds, tolerance)
			}
			for i, p := range res.Predictions {
				if int(p.ClassIndex) != fx.ClassIndex[i] && !golden.NearTie(fx.Probabilities[i], tolerance) {
					t.Errorf("node %s: class %d, PyTorch %d", p.Id, p.ClassIndex, fx.ClassIndex[i])
				}
			}
		})
	}
}

func TestParityKarate(t *testing.T) {
	e := runExport(t, "karate", "--karate")
	checkFixtures(t, serveModel(t, e.model), e.fixtures)
}

func TestParityCora(t *testing.T) {
	e := runExport(t, "cora-seed0", "--data", testenv.CoraDir(t), "--seed", "0")
	checkFixtures(t, serveModel(t, e.model), e.fixtures)
}

// TestCoraAccuracy: the script's GCN reaches Kipf & Welling's accuracy on
// Cora (81.5% in the paper): at least 0.81, mean of three seeds.
func TestCoraAccuracy(t *testing.T) {
	cora := testenv.CoraDir(t)
	var sum float64
	for seed := range 3 {
		e := runExport(t, "cora-seed"+strconv.Itoa(seed), "--data", cora, "--seed", strconv.Itoa(seed))
		t.Logf("seed %d: test_accuracy=%.4f", seed, e.accuracy)
		sum += e.accuracy
	}
	if mean := sum / 3; mean < 0.81 {
		t.Errorf("mean test accuracy %.4f over seeds 0-2, want >= 0.81", mean)
	} else {
		t.Logf("mean test accuracy %.4f", mean)
	}
}
