package gcn

import (
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphcheck"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// BenchmarkGraphTensors is what PredictGraph adds to Predict: validating
// Go values and mapping ids to node indexes (graphTensors), alone. Compare
// with BenchmarkPredict/*/native, the run it is added to.
func BenchmarkGraphTensors(b *testing.B) {
	for _, p := range []struct {
		name                   string
		nodes, edges, features int
	}{
		{"karate", 34, 78, 34},
		{"cora", 2708, 5278, 1433},
		{"large", 100_000, 500_000, 16},
	} {
		b.Run(p.name, func(b *testing.B) {
			m := graphwire.SyntheticGraph(p.nodes, p.edges, p.features, 1)
			g := Graph{Nodes: make([]Node, len(m.Nodes)), Edges: make([]Edge, len(m.Edges))}
			for i, n := range m.Nodes {
				g.Nodes[i] = Node{ID: n.Id, Features: n.Features}
			}
			for j, e := range m.Edges {
				g.Edges[j] = Edge{Source: e.SourceId, Target: e.TargetId}
			}
			var buf graphcheck.Buffers // reused, as PredictGraph's pool does
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := graphTensors(&g, p.features, Limits{}, &buf); err != nil {
					b.Fatal(err)
				}
				buf.Release()
			}
		})
	}
}
