package incremental

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestIncrementalDuplicateLinks lists one link many times at a pending
// hub: the model counts every listing (the hub's degree and its weight in
// each neighbour's aggregate), and the state keeps each neighbour once
// with its multiplicity, so a score of a node next to the hub reads the
// hub once however many times the link is listed. Every node is checked
// against the reference as copies are added, the hub changes, and the
// copies are removed one by one down to none, in both constructors.
func TestIncrementalDuplicateLinks(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		for _, agg := range aggregations {
			t.Run(fmt.Sprintf("concurrent=%v/%s", concurrent, agg), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(21, 22))
				net := randomNetwork(rng, agg, []int{4, 5, 3}, gcn.InputNormNone)
				g := newTestGraph(rng, 4, 30, 40)
				newState := New
				if concurrent {
					newState = NewConcurrent
				}
				s, err := newState(net, g)
				if err != nil {
					t.Fatal(err)
				}
				s.SetLazyDegree(6)
				s.setLinkIndexMin(2) // the hub's links through the index (New)
				hub, a, b := int32(0), int32(1), int32(2)
				want := func() [][]float64 { return reference(net, g) }
				step := func(what string, changes []Change) {
					t.Helper()
					if err := s.Apply(changes); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					checkNodes(t, s, g.liveNodes(), want(), 1e-5, what)
					checkLinks(t, s, g, what)
				}
				// 40 listings of hub-a, 25 of b-hub (either direction), in
				// two batches: the hub goes pending in the first.
				var c []Change
				for range 20 {
					c = append(c, g.addEdge(hub, a), g.addEdge(b, hub))
				}
				step("copies, hub goes pending", c)
				c = c[:0]
				for range 20 {
					c = append(c, g.addEdge(a, hub))
				}
				for range 5 {
					c = append(c, g.addEdge(hub, b))
				}
				step("more copies while pending", c)
				// mean and sum contributions do not depend on the degree:
				// the hub goes pending when its row changes.
				g.feat[hub] = g.randomFeatures(rng)
				step("hub features", []Change{{Kind: FeaturesChanged, U: hub}})
				vw := s.views[s.active.Load()]
				if vw.last.pend[hub] < 0 {
					t.Fatalf("hub (degree %d, lazy degree 6) is not pending: the test does not cover pending duplicates", vw.deg[hub])
				}
				for _, v := range []int32{a, b} {
					n := 0
					for _, e := range vw.links[v] {
						if e.u == hub {
							n++
							if e.m < 25 {
								t.Errorf("slot %d lists the hub with multiplicity %d, want at least 25", v, e.m)
							}
						}
					}
					if n != 1 {
						t.Errorf("slot %d lists the hub %d times, want once", v, n)
					}
				}
				g.feat[hub] = g.randomFeatures(rng)
				step("hub features again", []Change{{Kind: FeaturesChanged, U: hub}})
				// Remove the copies of hub-a one per batch, then the rest
				// in one batch: the hub stops pending on the way.
				for i := 0; ; i++ {
					j := -1
					for k, e := range g.listed {
						if e == [2]int32{hub, a} || e == [2]int32{a, hub} {
							j = k
							break
						}
					}
					if j < 0 {
						break
					}
					step(fmt.Sprintf("remove copy %d of hub-a", i), []Change{g.removeListed(j)})
				}
				c = c[:0]
				for k := 0; k < len(g.listed); {
					if e := g.listed[k]; e == [2]int32{hub, b} || e == [2]int32{b, hub} {
						c = append(c, g.removeListed(k))
						continue
					}
					k++
				}
				step("remove every copy of hub-b", c)
			})
		}
	}
}
