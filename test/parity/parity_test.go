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
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
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
	if code == 0 {
		if err := goleak.Find(testenv.LeakOptions()...); err != nil { // a goroutine the tests started still runs
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
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
			res, err := client.ProcessGraph(testenv.Context(t), req)
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

// mode is one way the library runs a model.
type mode struct {
	name   string
	native bool // Info().Native must be this
	opts   []gcn.Option
}

// modes are the native path with one and two goroutines and ONNX Runtime
// (the portable fallback) with one and two intra-op threads (a ScatterND
// model caps ORT at one: its metadata says so).
var modes = []mode{
	{"native/workers=1", true, []gcn.Option{gcn.WithNativeWorkers(1)}},
	{"native/workers=2", true, []gcn.Option{gcn.WithNativeWorkers(2)}},
	{"ort/intra=1", false, []gcn.Option{gcn.WithNativeExecution(false), gcn.WithIntraOpThreads(1)}},
	{"ort/intra=2", false, []gcn.Option{gcn.WithNativeExecution(false), gcn.WithIntraOpThreads(2)}},
}

// checkLibraryModes runs checkLibrary in every mode.
func checkLibraryModes(t *testing.T, model, dir string) {
	t.Helper()
	fixtures := golden.Load(t, dir)
	for _, md := range modes {
		checkLibrary(t, model, fixtures, md)
	}
}

// checkLibrary runs every fixture through the public library,
// gcn.PredictGraph on Go values (no server), and compares with PyTorch.
func checkLibrary(t *testing.T, model string, fixtures []golden.Fixture, md mode) {
	t.Helper()
	m, err := gcn.Open(model, append([]gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))}, md.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if info := m.Info(); info.Native != md.native {
		t.Fatalf("%s: Info().Native = %v, want %v (%s)", md.name, info.Native, md.native, info.NativeReason)
	}
	for _, fx := range fixtures {
		t.Run("library/"+md.name+"/"+fx.Name, func(t *testing.T) {
			var g gcn.Graph
			for _, n := range fx.Request.GetNodes() {
				g.Nodes = append(g.Nodes, gcn.Node{ID: n.GetId(), Features: n.GetFeatures()})
			}
			for _, e := range fx.Request.GetEdges() {
				g.Edges = append(g.Edges, gcn.Edge{Source: e.GetSourceId(), Target: e.GetTargetId()})
			}
			p, err := m.PredictGraph(testenv.Context(t), g)
			if err != nil {
				t.Fatalf("PredictGraph: %v", err)
			}
			dp := golden.MaxAbsDiff(p.Probabilities, fx.FlatProbabilities())
			ds := golden.MaxAbsDiff(p.Scores, fx.Scores)
			t.Logf("%d nodes, %d edges: max |library - PyTorch| probabilities %.2g, scores %.2g", len(g.Nodes), len(g.Edges), dp, ds)
			if dp > tolerance || ds > tolerance {
				t.Errorf("max abs diff from PyTorch: probabilities %.3g, scores %.3g; want <= %g", dp, ds, tolerance)
			}
		})
	}
}

// TestParityKarate and TestParityCora hold the served scores (the real
// server over gRPC) and the library's (gcn, in process) to PyTorch's.
func TestParityKarate(t *testing.T) {
	e := runExport(t, "karate", "--karate")
	checkFixtures(t, serveModel(t, e.model), e.fixtures)
	checkLibraryModes(t, e.model, e.fixtures)
}

// TestParityPortable: a model exported with --portable (no "layers"
// metadata) and ScatterElements (correct with any thread count) runs in ONNX
// Runtime with one and two intra-op threads, and matches PyTorch.
func TestParityPortable(t *testing.T) {
	e := runExport(t, "karate-portable", "--karate", "--portable", "--aggregation", "scatterelements")
	fixtures := golden.Load(t, e.fixtures)
	for _, threads := range []int{1, 2} {
		md := mode{"portable/intra=" + strconv.Itoa(threads), false, []gcn.Option{gcn.WithIntraOpThreads(threads)}}
		checkLibrary(t, e.model, fixtures, md)
	}
}

// TestParityLarge: a random 100k-node, 500k-edge graph (F=16, 7 classes,
// untrained weights) in every mode.
func TestParityLarge(t *testing.T) {
	e := runExport(t, "random-100k", "--random-init", "--features", "16", "--classes", "7",
		"--fixture-random", "100000,500000")
	checkLibraryModes(t, e.model, e.fixtures)
}

func TestParityCora(t *testing.T) {
	e := runExport(t, "cora-seed0", "--data", testenv.CoraDir(t), "--seed", "0")
	checkFixtures(t, serveModel(t, e.model), e.fixtures)
	checkLibraryModes(t, e.model, e.fixtures)
}

// TestCoraAccuracy: the script's recipe reaches Kipf & Welling's accuracy on
// Cora (81.5% in the paper) on every seed, not on lucky ones: three seeds,
// mean at least 0.810 and none below 0.800. Training only (--seeds writes
// nothing); about 40 s of CPU.
func TestCoraAccuracy(t *testing.T) {
	const seeds, wantMean, wantEach = 3, 0.810, 0.800
	python := testenv.Python(t)
	root := testenv.RepoRoot(t)
	cmd := exec.Command(python, filepath.Join(root, "scripts", "export_onnx.py"),
		"--data", testenv.CoraDir(t), "--seed", "0", "--seeds", strconv.Itoa(seeds))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("export_onnx.py --seeds: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	accuracies, err := seedAccuracies(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(accuracies) != seeds {
		t.Fatalf("got %d seed lines, want %d:\n%s", len(accuracies), seeds, out)
	}
	var sum float64
	for seed, acc := range accuracies {
		t.Logf("seed %d: test_accuracy=%.4f", seed, acc)
		if acc < wantEach {
			t.Errorf("seed %d: test accuracy %.4f, want >= %.3f", seed, acc, wantEach)
		}
		sum += acc
	}
	mean := sum / seeds
	if mean < wantMean {
		t.Errorf("mean test accuracy %.4f over seeds 0-%d, want >= %.3f", mean, seeds-1, wantMean)
	}
	if last, err := lastAccuracy(out); err != nil || math.Abs(last-mean) > 1e-4 {
		t.Errorf("last line says test_accuracy=%.4f (%v), want the mean %.4f", last, err, mean)
	}
	t.Logf("mean test accuracy %.4f", mean)
}

// seedAccuracies parses the per-seed lines of --seeds, in order:
// "seed=S epochs=E val_accuracy=V test_accuracy=T".
func seedAccuracies(out []byte) ([]float64, error) {
	var accs []float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "seed=") {
			continue
		}
		var seed, epochs int
		var val, test float64
		if _, err := fmt.Sscanf(line, "seed=%d epochs=%d val_accuracy=%g test_accuracy=%g", &seed, &epochs, &val, &test); err != nil {
			return nil, fmt.Errorf("seed line %q: %v", line, err)
		}
		accs = append(accs, test)
	}
	return accs, sc.Err()
}
