package gcn_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestPredictMatchesPyTorch runs every committed golden fixture of the
// bundled model and compares with the outputs PyTorch computed for the same
// weights (written by scripts/export_onnx.py).
func TestPredictMatchesPyTorch(t *testing.T) {
	m := infertest.OpenKarate(t)
	fixtures := golden.Load(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate"))
	for _, fx := range fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			g := fx.Graph(t, m.Info().FeatureDim)
			p, err := m.Predict(context.Background(), g)
			if err != nil {
				t.Fatalf("Predict: %v", err)
			}
			if d := golden.MaxAbsDiff(p.Probabilities, fx.FlatProbabilities()); d > 1e-5 {
				t.Errorf("probabilities: max abs diff from PyTorch %.3g, want <= 1e-5", d)
			}
			if d := golden.MaxAbsDiff(p.Scores, fx.Scores); d > 1e-5 {
				t.Errorf("scores: max abs diff from PyTorch %.3g, want <= 1e-5", d)
			}
			for i, c := range fx.ClassIndex {
				if got := p.ClassIndex[i]; int(got) != c && !golden.NearTie(fx.Probabilities[i], 1e-5) {
					t.Errorf("node %d: class %d, want %d", i, got, c)
				}
			}
		})
	}
}

func TestInfoFromMetadata(t *testing.T) {
	m := infertest.OpenKarate(t)
	info := m.Info()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got, want := info.SHA256, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("SHA256 = %s, want %s", got, want)
	}
	if info.FeatureDim != 34 || info.NumClasses != 2 {
		t.Errorf("FeatureDim, NumClasses = %d, %d, want 34, 2", info.FeatureDim, info.NumClasses)
	}
	if got := strings.Join(info.ClassNames, ","); got != "Mr. Hi,Officer" {
		t.Errorf("ClassNames = %q, want Mr. Hi,Officer", got)
	}
	if info.ScoreClass != 0 {
		t.Errorf("ScoreClass = %d, want 0 (Mr. Hi)", info.ScoreClass)
	}
	if info.ORTVersion != testenv.ORTVersion {
		t.Errorf("ORTVersion = %q, want %q", info.ORTVersion, testenv.ORTVersion)
	}
	if !info.Batchable || info.OutputKind != gcn.OutputProbabilities || info.Name == "" {
		t.Errorf("Batchable, OutputKind, Name = %v, %q, %q; want true, probabilities, non-empty", info.Batchable, info.OutputKind, info.Name)
	}
}

// TestPredictConcurrent shares one model among 64 goroutines (run it with
// -race): unbatched, every result must equal the serial one bit for bit;
// batched (merged runs), within 1e-6.
func TestPredictConcurrent(t *testing.T) {
	serial := infertest.OpenKarate(t)
	t.Run("unbatched", func(t *testing.T) {
		predictConcurrently(t, serial, infertest.OpenKarate(t, gcn.WithMaxConcurrentRuns(4)), 0)
	})
	t.Run("batched", func(t *testing.T) {
		predictConcurrently(t, serial, infertest.OpenKarate(t, gcn.WithBatching(gcn.BatchOptions{})), 1e-6)
	})
}

func predictConcurrently(t *testing.T, serial, m *gcn.Model, tol float64) {
	const graphs = 8
	want := make([]gcn.Prediction, graphs)
	inputs := make([]gcn.Tensors, graphs)
	for i := range graphs {
		inputs[i] = infertest.RandomGraph(uint64(i), 5+i*20, 10+i*60, m.Info().FeatureDim)
		p, err := serial.Predict(context.Background(), inputs[i])
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64*graphs)
	for w := range 64 {
		wg.Go(func() {
			for k := range graphs {
				i := (w + k) % graphs
				p, err := m.Predict(context.Background(), inputs[i])
				if err != nil {
					errs <- err
					return
				}
				if d := golden.MaxAbsDiff(p.Probabilities, want[i].Probabilities); d > tol {
					errs <- fmt.Errorf("graph %d: concurrent result differs from serial result by %.3g, want <= %g", i, d, tol)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPredictHonoursContext: a context that has ended stops the run inside
// ONNX Runtime, and the model keeps working afterwards.
func TestPredictHonoursContext(t *testing.T) {
	m := infertest.OpenKarate(t)
	big := infertest.RandomGraph(7, 50_000, 500_000, m.Info().FeatureDim)

	// The shortest of three full runs: the deadline below is a tenth of
	// it, which a later run on a machine whose load just fell cannot beat
	// the way it could beat a tenth of one slow first run.
	full := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		if _, err := m.Predict(context.Background(), big); err != nil {
			t.Fatal(err)
		}
		full = min(full, time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Predict(ctx, big); !errors.Is(err, context.Canceled) {
		t.Errorf("Predict with canceled context: err = %v, want context.Canceled", err)
	}

	// A run whose deadline passes mid-run ends with DeadlineExceeded. On a
	// loaded machine the timer that ends the context can fire late, after
	// the run has finished: a run that finished is tried again (up to 5
	// times); any other error, or five finished runs, fail.
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), full/10)
		start := time.Now()
		_, err = m.Predict(ctx, big)
		cancel()
		t.Logf("full run %v; run %d with deadline %v returned after %v: %v", full, attempt, full/10, time.Since(start), err)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Predict past deadline: err = %v, want context.DeadlineExceeded", err)
	}

	if _, err := m.Predict(context.Background(), infertest.RandomGraph(1, 3, 2, m.Info().FeatureDim)); err != nil {
		t.Errorf("Predict after a terminated run: %v", err)
	}
}

func TestPredictRejectsMalformedTensors(t *testing.T) {
	m := infertest.OpenKarate(t, gcn.WithLimits(gcn.Limits{MaxNodes: 10, MaxEdges: 5}))
	f := m.Info().FeatureDim
	nan := make([]float32, f)
	nan[3] = float32(math.NaN())
	tests := []struct {
		t    gcn.Tensors
		kind gcn.ErrorKind
		want string
	}{
		{gcn.Tensors{NumNodes: 2, Features: make([]float32, f)}, gcn.KindInvalidArgument, "x: 34 values for 2 nodes, want 68 (34 features per node)"},
		{gcn.Tensors{NumNodes: 1, Features: make([]float32, f), EdgeIndex: []int64{0}}, gcn.KindInvalidArgument, "edge_index: 1 values, want 2 per edge (shape [2, E])"},
		{gcn.Tensors{NumNodes: 1, Features: make([]float32, f), EdgeIndex: []int64{0, 1}}, gcn.KindInvalidArgument, "edge_index[1][0] = 1 is not a node index in [0, 1)"},
		{gcn.Tensors{NumNodes: 1, Features: make([]float32, f), EdgeIndex: []int64{-1, 0}}, gcn.KindInvalidArgument, "edge_index[0][0] = -1 is not a node index in [0, 1)"},
		{gcn.Tensors{NumNodes: 1, Features: nan}, gcn.KindInvalidArgument, "x[0][3] is NaN (features must be finite)"},
		{gcn.Tensors{NumNodes: 11, Features: make([]float32, 11*f)}, gcn.KindTooLarge, "graph has 11 nodes, limit is 10"},
		{gcn.Tensors{NumNodes: 1, Features: make([]float32, f), EdgeIndex: make([]int64, 12)}, gcn.KindTooLarge, "graph has 6 edges, limit is 5"},
	}
	for _, tt := range tests {
		_, err := m.Predict(context.Background(), tt.t)
		var e *gcn.Error
		if !errors.As(err, &e) || e.Kind != tt.kind || e.Msg != tt.want {
			t.Errorf("Predict(%d nodes, %d features, %d edge entries) = %v, want %v %q", tt.t.NumNodes, len(tt.t.Features), len(tt.t.EdgeIndex), err, tt.kind, tt.want)
		}
	}
	p, err := m.Predict(context.Background(), gcn.Tensors{})
	if err != nil || len(p.Scores) != 0 {
		t.Errorf("Predict(empty graph) = %d scores, %v; want an empty prediction", len(p.Scores), err)
	}
}

// TestPredictGraphValidatesLikeTheServer: the Go-values form gives the
// server's messages, and its rows follow the nodes.
func TestPredictGraphValidatesLikeTheServer(t *testing.T) {
	m := infertest.OpenKarate(t)
	f := m.Info().FeatureDim
	feat := make([]float32, f)
	tests := []struct {
		g    gcn.Graph
		want string
	}{
		{gcn.Graph{Nodes: []gcn.Node{{ID: "", Features: feat}}}, "node 0: empty id"},
		{gcn.Graph{Nodes: []gcn.Node{{ID: "a", Features: feat}, {ID: "a", Features: feat}}}, `node 1: duplicate id "a" (also node 0)`},
		{gcn.Graph{Nodes: []gcn.Node{{ID: "a", Features: feat[:3]}}}, `node 0 ("a"): 3 features, model wants 34`},
		{gcn.Graph{Nodes: []gcn.Node{{ID: "a", Features: feat}}, Edges: []gcn.Edge{{Source: "a", Target: "n9"}}}, `edge 0: target "n9" is not a node id`},
	}
	for _, tt := range tests {
		_, err := m.PredictGraph(context.Background(), tt.g)
		var e *gcn.Error
		if !errors.As(err, &e) || e.Kind != gcn.KindInvalidArgument || e.Msg != tt.want {
			t.Errorf("PredictGraph: %v, want InvalidArgument %q", err, tt.want)
		}
	}
	g := gcn.Graph{Nodes: []gcn.Node{{ID: "x", Features: feat}, {ID: "y", Features: feat}}, Edges: []gcn.Edge{{Source: "x", Target: "y"}}}
	p, err := m.PredictGraph(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	q, err := m.Predict(context.Background(), gcn.Tensors{NumNodes: 2, Features: make([]float32, 2*f), EdgeIndex: []int64{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if d := golden.MaxAbsDiff(p.Probabilities, q.Probabilities); d != 0 {
		t.Errorf("PredictGraph and Predict of the same graph differ by %.3g", d)
	}
}

// TestCloseWaitsAndRefuses: Close lets a call in flight finish, and calls
// after it get ErrClosed.
func TestCloseWaitsAndRefuses(t *testing.T) {
	m, err := gcn.Open(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"), gcn.WithLibraryPath(testenv.ORTLibrary(t)))
	if err != nil {
		t.Fatal(err)
	}
	big := infertest.RandomGraph(3, 20_000, 200_000, m.Info().FeatureDim)
	done := make(chan error, 1)
	go func() {
		_, err := m.Predict(context.Background(), big)
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil && !errors.Is(err, gcn.ErrClosed) {
		t.Errorf("call in flight at Close: %v, want success (or ErrClosed if it had not started)", err)
	}
	if _, err := m.Predict(context.Background(), big); !errors.Is(err, gcn.ErrClosed) {
		t.Errorf("Predict after Close: %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestOpenRejects: a model that breaks the contract fails at load with an
// error that says what is wrong.
func TestOpenRejects(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		filepath.Join(dir, "missing.onnx"): "no such file",
		garbage:                            "not a loadable ONNX model",
	}
	for name, want := range writeContractViolations(t, dir) {
		cases[name] = want
	}
	for path, want := range cases {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m, err := gcn.Open(path, gcn.WithLibraryPath(lib))
			if err == nil {
				m.Close()
				t.Fatalf("Open: no error, want one containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Open: %v, want an error containing %q", err, want)
			}
		})
	}
	// The environment lives for the process: once loaded, a second library
	// is refused by name.
	if _, err := gcn.Open(garbage, gcn.WithLibraryPath(filepath.Join(dir, "libnothing.so"))); err == nil ||
		!strings.Contains(err.Error(), "libnothing.so") {
		t.Errorf("Open with another ORT library: %v, want an error naming libnothing.so", err)
	}
}

// writeContractViolations writes small ONNX models that each break one rule
// of the contract, with onnx.helper, and returns path -> expected error text.
func writeContractViolations(t *testing.T, dir string) map[string]string {
	t.Helper()
	python := testenv.Python(t)
	script := `
import sys, json, onnx
from onnx import helper as h, TensorProto as T
d = sys.argv[1]
def save(name, inputs, outputs, meta=None):
    nodes = [h.make_node("Identity", [inputs[0].name], [outputs[0].name])]
    g = h.make_graph(nodes, name, inputs, outputs)
    m = h.make_model(g, opset_imports=[h.make_operatorsetid("", 18)])
    m.ir_version = 8
    for k, v in (meta or {}).items():
        e = m.metadata_props.add(); e.key = k; e.value = v
    onnx.save(m, d + "/" + name + ".onnx")
x = h.make_tensor_value_info("x", T.FLOAT, ["n", 4])
ei = h.make_tensor_value_info("edge_index", T.INT64, [2, "e"])
out = h.make_tensor_value_info("y", T.FLOAT, ["n", 4])
save("one_input", [x], [out])
save("wrong_name", [x, h.make_tensor_value_info("edges", T.INT64, [2, "e"])], [out])
save("int_features", [h.make_tensor_value_info("x", T.INT64, ["n", 4]), ei], [h.make_tensor_value_info("y", T.INT64, ["n", 4])])
save("dynamic_f", [h.make_tensor_value_info("x", T.FLOAT, ["n", "f"]), ei], [h.make_tensor_value_info("y", T.FLOAT, ["n", "f"])])
save("bad_class_names", [x, ei], [out], {"class_names": json.dumps(["a", "b"])})
save("bad_score_class", [x, ei], [out], {"score_class": "zebra"})
save("bad_feature_dim", [x, ei], [out], {"feature_dim": "5"})
`
	cmd := exec.Command(python, "-c", script, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("writing test models: %v\n%s", err, out)
	}
	return map[string]string{
		filepath.Join(dir, "one_input.onnx"):       "has 1 inputs",
		filepath.Join(dir, "wrong_name.onnx"):      `has inputs "x" and "edges"`,
		filepath.Join(dir, "int_features.onnx"):    "input x is",
		filepath.Join(dir, "dynamic_f.onnx"):       "no fixed feature dimension",
		filepath.Join(dir, "bad_class_names.onnx"): "class_names has 2 names, but the output has 4 classes",
		filepath.Join(dir, "bad_score_class.onnx"): `score_class "zebra" names no class`,
		filepath.Join(dir, "bad_feature_dim.onnx"): "feature_dim=5, but input x has 4 features",
	}
}

func TestSoftmaxOfLogits(t *testing.T) {
	row := []float32{1, 2, 3}
	gcn.Softmax(row)
	var sum float64
	for _, v := range row {
		sum += float64(v)
	}
	want := []float64{0.09003057, 0.24472847, 0.66524096}
	for i, v := range row {
		if math.Abs(float64(v)-want[i]) > 1e-6 {
			t.Errorf("softmax[%d] = %v, want %v", i, v, want[i])
		}
	}
	if math.Abs(sum-1) > 1e-6 {
		t.Errorf("softmax sums to %v, want 1", sum)
	}
}

// TestThreadCapKeepsScatterNDExact: the bundled model aggregates with
// ScatterND(reduction=add), whose ORT kernel races with more than one
// intra-op thread. Asking for two threads must get one, and repeated runs of
// a graph with many edges per node must agree bit for bit.
func TestThreadCapKeepsScatterNDExact(t *testing.T) {
	m := infertest.OpenKarate(t, gcn.WithIntraOpThreads(2))
	if got := m.Info().IntraOpThreads; got != 1 {
		t.Fatalf("IntraOpThreads = %d with max_intra_op_threads=1 in the metadata, want 1", got)
	}
	g := infertest.RandomGraph(11, 2_000, 200_000, m.Info().FeatureDim)
	first, err := m.Predict(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		p, err := m.Predict(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		if d := golden.MaxAbsDiff(p.Probabilities, first.Probabilities); d != 0 {
			t.Fatalf("repeated run differs by %.3g: the aggregation is racing", d)
		}
	}
}

// TestPredictGraphReusesScratch: PredictGraph calls from many goroutines,
// on graphs of different sizes (the largest split in parts), whose
// tensors and native pass share pooled scratch, give exactly what
// Predict gives on the same tensors, batched or not.
func TestPredictGraphReusesScratch(t *testing.T) {
	serial := infertest.OpenKarate(t, gcn.WithScratchBytes(0))
	f := serial.Info().FeatureDim
	const graphs = 6
	inputs := make([]gcn.Graph, graphs)
	want := make([]gcn.Prediction, graphs)
	for i := range graphs {
		n, e := 5+i*40, 10+i*120
		if i == graphs-1 {
			n, e = 20_000, 60_000 // decoded and run in parts
		}
		tensors := infertest.RandomGraph(uint64(i), n, e, f)
		g := gcn.Graph{Nodes: make([]gcn.Node, n), Edges: make([]gcn.Edge, e)}
		for v := range n {
			g.Nodes[v] = gcn.Node{ID: "node-" + strconv.Itoa(v*7), Features: tensors.Features[v*f : (v+1)*f]}
		}
		for j := range e {
			g.Edges[j] = gcn.Edge{Source: g.Nodes[tensors.EdgeIndex[j]].ID, Target: g.Nodes[tensors.EdgeIndex[e+j]].ID}
		}
		inputs[i] = g
		p, err := serial.Predict(context.Background(), tensors)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p
	}
	for _, tc := range []struct {
		name string
		opts []gcn.Option
		tol  float64
	}{
		{"unbatched", []gcn.Option{gcn.WithMaxConcurrentRuns(4)}, 0},
		{"batched", []gcn.Option{gcn.WithBatching(gcn.BatchOptions{})}, 1e-6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := infertest.OpenKarate(t, tc.opts...)
			var wg sync.WaitGroup
			errs := make(chan error, 8*graphs)
			for w := range 8 {
				wg.Go(func() {
					for k := range 2 * graphs {
						i := (w + k) % graphs
						p, err := m.PredictGraph(context.Background(), inputs[i])
						if err != nil {
							errs <- err
							return
						}
						if d := golden.MaxAbsDiff(p.Probabilities, want[i].Probabilities); d > tc.tol {
							errs <- fmt.Errorf("graph %d: PredictGraph differs from Predict by %.3g, want <= %g", i, d, tc.tol)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
