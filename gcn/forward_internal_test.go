package gcn

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// largeEdges is a random edge list of the large benchmark's shape.
func largeEdges(n, e int) []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	idx := make([]int64, 2*e)
	for i := range idx {
		idx[i] = int64(r.IntN(n))
	}
	return idx
}

// BenchmarkAggregate is the aggregation alone (one GCN layer's sum over the
// closed neighbourhoods, 16 and 7 wide (hidden and Cora's classes), on 100k nodes and 500k edges: 1M
// entries), on one goroutine and split over two; ns/entry is per
// (target, source) entry of the Adjacency.
func BenchmarkAggregate(b *testing.B) {
	const n, e = 100_000, 500_000
	adj, err := NewAdjacency(n, largeEdges(n, e))
	if err != nil {
		b.Fatal(err)
	}
	post := make([]float32, n)
	for v := range post {
		post[v] = 1 / float32(adj.Degree(v))
	}
	for _, c := range []struct{ width, workers int }{{16, 1}, {16, 2}, {7, 1}} {
		width := c.width
		h := make([]float32, n*stride(width))
		for i := range h {
			h[i] = float32(i%97) / 97
		}
		out := make([]float32, n*width)
		workers := c.workers
		b.Run("width="+strconv.Itoa(width)+"/workers="+strconv.Itoa(workers), func(b *testing.B) {
			rows := adj.splitTargets(workers)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				parallel(rows, func(lo, hi int) { aggregate(adj, h, width, post, nil, ActivationReLU, lo, hi, out) })
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(adj.NumEntries()), "ns/entry")
		})
	}
}

// BenchmarkNewAdjacency is the CSR build (counting sort) of the large graph.
func BenchmarkNewAdjacency(b *testing.B) {
	const n, e = 100_000, 500_000
	idx := largeEdges(n, e)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewAdjacency(n, idx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(e), "ns/edge")
}

// TestNativePays: wide dense first-layer inputs go to ONNX Runtime (its
// vectorised MatMul wins), bag-of-words and aggregation-heavy graphs stay
// native.
func TestNativePays(t *testing.T) {
	net := &Network{FeatureDim: 1433, Layers: []Layer{{In: 1433, Out: 16}, {In: 16, Out: 7}}}
	const n, e = 2708, 5278
	g := Tensors{NumNodes: n, Features: make([]float32, n*1433), EdgeIndex: largeEdges(n, e)}
	for i := range g.Features {
		g.Features[i] = 1
	}
	if net.nativePays(g) {
		t.Error("dense 1433-wide features: nativePays = true, want false")
	}
	for i := range g.Features {
		if i%79 != 0 { // 1.3% nonzero, as Cora's bag of words
			g.Features[i] = 0
		}
	}
	if !net.nativePays(g) {
		t.Error("bag-of-words features: nativePays = false, want true")
	}
	large := &Network{FeatureDim: 16, Layers: []Layer{{In: 16, Out: 16}, {In: 16, Out: 7}}}
	lg := Tensors{NumNodes: 100_000, Features: make([]float32, 100_000*16), EdgeIndex: largeEdges(100_000, 500_000)}
	for i := range lg.Features {
		lg.Features[i] = 1
	}
	if !large.nativePays(lg) {
		t.Error("large graph, dense 16 features: nativePays = false, want true")
	}
}

// layerByLayer is the native forward pass without fusion: each layer's
// transform over all rows, then its aggregation over all rows, then the
// softmax; the reference TestForwardFusedMatchesLayerByLayer holds the
// fused pass to.
func layerByLayer(n *Network, x []float32, adj *Adjacency) (layers [][]float32, probs []float32) {
	num := adj.NumNodes
	dinv, invDeg, rowNorm := make([]float32, num), make([]float32, num), []float32(nil)
	for v := range num {
		dinv[v] = float32(1 / math.Sqrt(float64(adj.Degree(v))))
		invDeg[v] = float32(1 / float64(adj.Degree(v)))
	}
	if n.InputNorm == InputNormRow {
		rowNorm = make([]float32, num)
		rowSumInverse(x, n.FeatureDim, 0, num, rowNorm)
	}
	in := x
	for li := range n.Layers {
		l := &n.Layers[li]
		h := make([]float32, num*stride(l.Out))
		transform(in, l.In, padWeight(l), stride(l.Out), n.layerScale(li, dinv, rowNorm), 0, num, h)
		out := make([]float32, num*l.Out)
		aggregate(adj, h, l.Out, n.layerPost(li, dinv, invDeg), l.Bias, l.Activation, 0, num, out)
		layers = append(layers, out)
		in = out
	}
	c := n.NumClasses()
	probs = append([]float32(nil), in...)
	for v := range num {
		softmax(probs[v*c : (v+1)*c])
	}
	return layers, probs
}

// TestForwardFusedMatchesLayerByLayer: the fused pass (aggregation and the
// next transform row by row) gives every layer's output and the
// probabilities bit for bit as the layer-by-layer pass, for 16-wide and
// other hidden widths, every aggregation, with 1 and 2 goroutines.
func TestForwardFusedMatchesLayerByLayer(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	layer := func(in, out int, act Activation, agg Aggregation, bias bool) Layer {
		l := Layer{Aggregation: agg, In: in, Out: out, Weight: make([]float32, in*out), Activation: act}
		for i := range l.Weight {
			l.Weight[i] = float32(r.NormFloat64() * 0.5)
		}
		if bias {
			l.Bias = make([]float32, out)
			for i := range l.Bias {
				l.Bias[i] = float32(r.NormFloat64() * 0.1)
			}
		}
		return l
	}
	const f = 10
	nets := map[string]*Network{
		"gcn 16-7": {FeatureDim: f, InputNorm: InputNormRow, Layers: []Layer{
			layer(f, 16, ActivationReLU, AggregationGCN, true), layer(16, 7, ActivationNone, AggregationGCN, true)}},
		"mean 16-16-3": {FeatureDim: f, InputNorm: InputNormNone, Layers: []Layer{
			layer(f, 16, ActivationReLU, AggregationMean, false), layer(16, 16, ActivationReLU, AggregationSum, true),
			layer(16, 3, ActivationNone, AggregationMean, true)}},
		"sum 12-24-5": {FeatureDim: f, InputNorm: InputNormRow, Layers: []Layer{
			layer(f, 12, ActivationReLU, AggregationSum, true), layer(12, 24, ActivationReLU, AggregationGCN, false),
			layer(24, 5, ActivationNone, AggregationSum, true)}},
	}
	const num, e = 3000, 12000
	x := make([]float32, num*f)
	for i := range x {
		if r.IntN(3) == 0 {
			x[i] = r.Float32()
		}
	}
	adj, err := NewAdjacency(num, largeEdges(num, e))
	if err != nil {
		t.Fatal(err)
	}
	for name, net := range nets {
		if err := net.Check(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantLayers, wantProbs := layerByLayer(net, x, adj)
		for _, workers := range []int{1, 2} {
			got, err := net.ForwardAdjacency(context.Background(), x, adj, ForwardOptions{Workers: workers, KeepLayers: true})
			if err != nil {
				t.Fatal(err)
			}
			for li := range wantLayers {
				if !sameBits(got.Layers[li], wantLayers[li]) {
					t.Errorf("%s, workers=%d: layer %d differs from the layer-by-layer pass", name, workers, li)
				}
			}
			if !sameBits(got.Probabilities, wantProbs) {
				t.Errorf("%s, workers=%d: probabilities differ from the layer-by-layer pass", name, workers)
			}
			plain, err := net.ForwardAdjacency(context.Background(), x, adj, ForwardOptions{Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			if !sameBits(plain.Probabilities, wantProbs) {
				t.Errorf("%s, workers=%d: probabilities without KeepLayers differ", name, workers)
			}
		}
	}
}

func sameBits(a, b []float32) bool {
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
