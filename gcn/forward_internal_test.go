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
