package graphs_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// BenchmarkExtract: the 2-hop subgraph of 10 random nodes of a 100k-node,
// 500k-edge, 16-feature graph (what a ScoreNodes of 10 nodes runs the
// model on), and the delta of 100 edge changes the bench applies.
func BenchmarkExtract(b *testing.B) {
	g := synthetic(b, 100_000, 500_000, 16)
	r := rand.New(rand.NewPCG(1, 1))
	nodes := make([]int32, 10)
	b.ReportAllocs()
	var n, e int
	for b.Loop() {
		for i := range nodes {
			nodes[i] = int32(r.IntN(100_000))
		}
		sub := g.Extract(nodes, 2)
		n, e = sub.NumNodes(), sub.NumEdges()
	}
	b.ReportMetric(float64(n), "nodes")
	b.ReportMetric(float64(e), "edges")
}

func BenchmarkDelta100Edges(b *testing.B) {
	g := synthetic(b, 100_000, 500_000, 16)
	r := rand.New(rand.NewPCG(2, 2))
	var added []graphs.Edge
	b.ReportAllocs()
	for b.Loop() {
		d := &graphs.Delta{}
		for range 50 {
			e := graphs.Edge{Source: g.ID(int32(r.IntN(100_000))), Target: g.ID(int32(r.IntN(100_000)))}
			d.AddEdges = append(d.AddEdges, e)
		}
		if len(added) >= 50 {
			d.RemoveEdges, added = added[:50], added[50:]
		}
		p, err := g.Prepare(d, graphs.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		g.Apply(p)
		added = append(added, d.AddEdges...)
	}
}

func synthetic(tb testing.TB, n, e, f int) *graphs.Graph {
	msg := graphwire.SyntheticGraph(n, e, f, 1)
	d := &graphs.Delta{}
	for _, x := range msg.Nodes {
		d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: x.Id, Features: x.Features})
	}
	for _, x := range msg.Edges {
		d.AddEdges = append(d.AddEdges, graphs.Edge{Source: x.SourceId, Target: x.TargetId})
	}
	g := graphs.New(f)
	apply(tb, g, d)
	return g
}
