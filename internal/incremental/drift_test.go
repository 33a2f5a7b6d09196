package incremental

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestIncrementalDrift applies 1,000,000 random updates (changes: 47%
// edges added, 41% removed, 10% feature rows changed, 1% nodes added, 1%
// removed with their links) in batches of 100 to a 2-layer GCN (8 -> 16 ->
// 4) on a graph of about 1,000 nodes and 4,000 edges with hubs, then compares every node
// with a from-scratch inference within 1e-5. A small graph is the hard
// case: each neighbour sum takes thousands of adjustments, so the exact
// refresh runs many times (asserted). It takes about 1 s, 10 s under -race:
// the full million runs in CI too.
func TestIncrementalDrift(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) { runDrift(t, concurrent) })
	}
}

func runDrift(t *testing.T, concurrent bool) {
	const updates = 1_000_000
	rng := rand.New(rand.NewPCG(2026, 12))
	net := randomNetwork(rng, gcn.AggregationGCN, []int{8, 16, 4}, gcn.InputNormRow)
	g := newTestGraph(rng, 8, 1000, 4000)
	newState := New
	if concurrent {
		newState = NewConcurrent
	}
	s, err := newState(net, g)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLazyDegree(32)   // the graph's hubs reach about 55 links
	s.setLinkIndexMin(16) // and the larger lists are edited through their index
	mix := mixWeights{47, 41, 1, 1, 10}
	applied, batches := 0, 0
	worst := 0.0
	for applied < updates {
		changes := g.randomBatch(rng, 100, mix)
		if err := s.Apply(changes); err != nil {
			t.Fatalf("batch %d: %v", batches, err)
		}
		applied += len(changes)
		batches++
		if batches%500 == 0 {
			var sample []int32
			for range 20 {
				sample = append(sample, g.randomLive(rng))
			}
			worst = max(worst, checkNodes(t, s, sample, reference(net, g), 1e-5, fmt.Sprintf("after %d updates", applied)))
		}
	}
	live := g.liveNodes()
	worst = max(worst, checkNodes(t, s, live, reference(net, g), 1e-5, fmt.Sprintf("every node after %d updates", applied)))
	if s.refreshes == 0 {
		t.Errorf("no neighbour sum was refreshed exactly in %d updates: the drift bound's refresh never ran", applied)
	}
	maxDeg := 0
	for _, v := range live {
		maxDeg = max(maxDeg, len(g.adj[v]))
	}
	t.Logf("%d updates in %d batches; at the end %d live nodes, %d listed edges, max degree %d: max abs error %.3g, %d exact refreshes, %d hubs pending",
		applied, batches, len(live), len(g.listed), maxDeg, worst, s.refreshes, s.layers[0].pendLive)
}
