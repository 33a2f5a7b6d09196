package gcn

import (
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
