package gcn

import (
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// BenchmarkTensorsCheck is the validation Predict runs on every call
// (shapes, node index range, finite features), alone, on a Cora-shaped and
// the large graph.
func BenchmarkTensorsCheck(b *testing.B) {
	for _, p := range []struct {
		name                   string
		nodes, edges, features int
	}{
		{"karate", 34, 78, 34},
		{"cora", 2708, 5278, 1433},
		{"large", 100_000, 500_000, 16},
	} {
		b.Run(p.name, func(b *testing.B) {
			g, err := graphwire.FromMessage(graphwire.SyntheticGraph(p.nodes, p.edges, p.features, 1), p.features, graphwire.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			t := Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex}
			b.SetBytes(int64(4*len(t.Features) + 8*len(t.EdgeIndex)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if err := t.check(p.features, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU starts measuring this process's CPU time; the function it
// returns reports it per iteration as cpu-ms/op (steadier than ns/op on a
// shared machine).
func reportCPU(b *testing.B) func() {
	start := testenv.CPUTime()
	return func() { b.ReportMetric(float64(testenv.CPUTime()-start)/1e6/float64(b.N), "cpu-ms/op") }
}
