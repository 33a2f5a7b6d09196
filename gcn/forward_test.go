package gcn_test

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestForwardHandComputed checks each Aggregation on a graph small enough
// to work out by hand: nodes 0, 1, 2 with x = 1, 2, 4 (one feature); edges
// (0,1), (1,0), (1,2), (2,2): link 0-1 counts twice, the listed self loop
// counts for nothing, so deg = 3, 4, 2. One layer, W = [1, -1], bias
// [0.5, 0], ReLU: column 0 is a+0.5, column 1 is relu(-a) = 0.
func TestForwardHandComputed(t *testing.T) {
	g := gcn.Tensors{NumNodes: 3, Features: []float32{1, 2, 4}, EdgeIndex: []int64{0, 1, 1, 2, 1, 0, 2, 2}}
	s3, s2 := math.Sqrt(3), math.Sqrt(2)
	for _, tc := range []struct {
		agg  gcn.Aggregation
		want [3]float64 // a per node, before bias
	}{
		// a[d] = h[d] + sum of h[s] over links (with multiplicity).
		{gcn.AggregationSum, [3]float64{1 + 2*2, 2 + 2*1 + 4, 4 + 2}},
		// The sum divided by deg(d).
		{gcn.AggregationMean, [3]float64{5.0 / 3, 8.0 / 4, 6.0 / 2}},
		// Each entry h[s] / sqrt(deg(d) deg(s)).
		{gcn.AggregationGCN, [3]float64{1.0/3 + 2/s3, 0.5 + 1/s3 + s2, 2 + 1/s2}},
	} {
		t.Run(string(tc.agg), func(t *testing.T) {
			net := &gcn.Network{FeatureDim: 1, InputNorm: gcn.InputNormNone, Output: gcn.OutputSoftmax,
				Layers: []gcn.Layer{{Aggregation: tc.agg, In: 1, Out: 2, Weight: []float32{1, -1},
					Bias: []float32{0.5, 0}, Activation: gcn.ActivationReLU}}}
			if err := net.Check(); err != nil {
				t.Fatal(err)
			}
			out, err := net.ForwardLayers(context.Background(), g, gcn.ForwardOptions{KeepLayers: true})
			if err != nil {
				t.Fatal(err)
			}
			for v, a := range tc.want {
				got := out.Layers[0][2*v : 2*v+2]
				if math.Abs(float64(got[0])-(a+0.5)) > 1e-6 || got[1] != 0 {
					t.Errorf("node %d: layer output %v, want [%.6f 0]", v, got, a+0.5)
				}
				e := math.Exp(a + 0.5)
				p0 := e / (e + 1)
				if got := out.Probabilities[2*v]; math.Abs(float64(got)-p0) > 1e-6 {
					t.Errorf("node %d: probability %v, want %.6f", v, got, p0)
				}
			}
		})
	}
}

// TestForwardRowNorm: input_norm "row" divides each row by its sum and
// leaves an all-zero row at zero (no NaN).
func TestForwardRowNorm(t *testing.T) {
	net := &gcn.Network{FeatureDim: 2, InputNorm: gcn.InputNormRow, Output: gcn.OutputSoftmax,
		Layers: []gcn.Layer{{Aggregation: gcn.AggregationSum, In: 2, Out: 2, Weight: []float32{1, 0, 0, 1}, Activation: gcn.ActivationNone}}}
	g := gcn.Tensors{NumNodes: 2, Features: []float32{1, 3, 0, 0}}
	out, err := net.ForwardLayers(context.Background(), g, gcn.ForwardOptions{KeepLayers: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out.Layers[0], []float32{0.25, 0.75, 0, 0}; !equalBits(got, want) {
		t.Errorf("layer output %v, want %v", got, want)
	}
}

// randomNetwork is an untrained network with GCN layers f -> 16 -> c.
func randomNetwork(seed uint64, f, c int) *gcn.Network {
	r := rand.New(rand.NewPCG(seed, 9))
	layer := func(in, out int, act gcn.Activation, agg gcn.Aggregation) gcn.Layer {
		l := gcn.Layer{Aggregation: agg, In: in, Out: out, Weight: make([]float32, in*out), Bias: make([]float32, out), Activation: act}
		for i := range l.Weight {
			l.Weight[i] = float32(r.NormFloat64() * 0.5)
		}
		for i := range l.Bias {
			l.Bias[i] = float32(r.NormFloat64() * 0.1)
		}
		return l
	}
	return &gcn.Network{FeatureDim: f, InputNorm: gcn.InputNormRow, Output: gcn.OutputSoftmax, Layers: []gcn.Layer{
		layer(f, 16, gcn.ActivationReLU, gcn.AggregationGCN),
		layer(16, 16, gcn.ActivationReLU, gcn.AggregationMean),
		layer(16, c, gcn.ActivationNone, gcn.AggregationSum),
	}}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestForwardBitIdenticalAcrossWorkers: the native result (every layer and
// the probabilities) is the same bit for bit with 1, 2, 3 and 8 goroutines.
func TestForwardBitIdenticalAcrossWorkers(t *testing.T) {
	net := randomNetwork(1, 16, 7)
	g := infertest.RandomGraph(5, 30_000, 150_000, 16)
	var want gcn.Outputs
	for _, workers := range []int{1, 2, 3, 8} {
		got, err := net.ForwardLayers(context.Background(), g, gcn.ForwardOptions{Workers: workers, KeepLayers: true})
		if err != nil {
			t.Fatal(err)
		}
		if workers == 1 {
			want = got
			continue
		}
		for li := range want.Layers {
			if !equalBits(got.Layers[li], want.Layers[li]) {
				t.Errorf("workers=%d: layer %d differs from workers=1", workers, li)
			}
		}
		if !equalBits(got.Probabilities, want.Probabilities) {
			t.Errorf("workers=%d: probabilities differ from workers=1", workers)
		}
	}
	// Forward (no kept layers, reused buffers) gives the same.
	p, err := net.Forward(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if !equalBits(p, want.Probabilities) {
		t.Error("Forward differs from ForwardLayers")
	}
}

// TestForwardCanceled: a canceled context stops the run with its error.
func TestForwardCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := randomNetwork(1, 16, 7).Forward(ctx, infertest.RandomGraph(1, 10, 20, 16))
	if err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// TestModelNative: the bundled model runs natively, its Network has the two
// GCN layers it describes, and WithNativeExecution(false) keeps ONNX Runtime.
func TestModelNative(t *testing.T) {
	m := infertest.OpenKarate(t)
	info := m.Info()
	if !info.Native {
		t.Fatalf("Info().Native = false (%s), want true", info.NativeReason)
	}
	net := m.Network()
	if net == nil || len(net.Layers) != 2 || net.FeatureDim != 34 || net.NumClasses() != 2 || net.ReceptiveField() != 2 {
		t.Fatalf("Network() = %+v, want 2 layers 34 -> 16 -> 2", net)
	}
	for i, l := range net.Layers {
		if l.Aggregation != gcn.AggregationGCN {
			t.Errorf("layer %d: aggregation %q, want gcn", i, l.Aggregation)
		}
	}
	off := infertest.OpenKarate(t, gcn.WithNativeExecution(false))
	if off.Info().Native || off.Network() == nil {
		t.Errorf("WithNativeExecution(false): Native = %v, Network nil = %v; want false, false", off.Info().Native, off.Network() == nil)
	}
}

// TestLyingLayersMetadata: a model whose "layers" metadata does not
// describe its ONNX graph is detected at load and served by ONNX Runtime,
// still matching PyTorch. The edits keep every string's length, so the
// protobuf stays valid.
func TestLyingLayersMetadata(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	fixtures := golden.Load(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate"))
	for _, tc := range []struct{ name, old, new, reason string }{
		{"activation", `"activation":"relu"`, `"activation":"none"`, "does not match the ONNX graph"},
		{"aggregation", `"aggregation":"gcn"`, `"aggregation":"sum"`, "does not match the ONNX graph"},
		{"weight", `"weight":"conv2.weight"`, `"weight":"conv1.weight"`, "weight"},
		{"bad json", `"layers":[{`, `"layers":[[`, "metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(data, []byte(tc.old)) {
				t.Fatalf("model/karate.onnx has no %s", tc.old)
			}
			lying := bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)
			m, err := gcn.OpenBytes(lying, gcn.WithLibraryPath(testenv.ORTLibrary(t)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			info := m.Info()
			t.Logf("NativeReason: %s", info.NativeReason)
			if info.Native || m.Network() != nil {
				t.Fatalf("Native = %v, Network nil = %v; want false, true", info.Native, m.Network() == nil)
			}
			if !strings.Contains(info.NativeReason, tc.reason) {
				t.Errorf("NativeReason %q does not say %q", info.NativeReason, tc.reason)
			}
			for _, fx := range fixtures {
				p, err := m.Predict(context.Background(), fx.Graph(t, info.FeatureDim))
				if err != nil {
					t.Fatal(err)
				}
				if d := golden.MaxAbsDiff(p.Probabilities, fx.FlatProbabilities()); d > 1e-5 {
					t.Errorf("%s: max abs diff from PyTorch %.3g, want <= 1e-5", fx.Name, d)
				}
			}
		})
	}
}

// TestNetworkMatchesORTOnRandomGraphs: on random multigraphs of several
// sizes the native path gives ONNX Runtime's probabilities within 1e-5.
func TestNetworkMatchesORTOnRandomGraphs(t *testing.T) {
	native := infertest.OpenKarate(t)
	ort := infertest.OpenKarate(t, gcn.WithNativeExecution(false))
	for i, size := range [][2]int{{1, 0}, {2, 5}, {40, 300}, {500, 2000}, {3000, 20000}} {
		g := infertest.RandomGraph(uint64(i), size[0], size[1], 34)
		a, err := native.Predict(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ort.Predict(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		if d := golden.MaxAbsDiff(a.Probabilities, b.Probabilities); d > 1e-5 {
			t.Errorf("%d nodes, %d edges: native and ORT differ by %.3g, want <= 1e-5", size[0], size[1], d)
		}
	}
}
