package incremental

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

// testGraph is the in-test Topology: adjacency lists with swap-remove,
// plus the multiset of listed edges (self loops included) that the
// reference reads instead of the adjacency lists, so the reference follows
// gcn's documented semantics from the listed edges alone.
type testGraph struct {
	F      int
	live   []bool
	adj    [][]int32
	feat   [][]float32
	listed [][2]int32 // every listed edge, in no order
	free   []int32    // dead slots a new node may reuse
}

func (g *testGraph) NumSlots() int     { return len(g.live) }
func (g *testGraph) Live(i int32) bool { return g.live[i] }

// Neighbors and Features panic on a dead slot: the engine must not ask
// (a real graph may hold nothing there).
func (g *testGraph) Neighbors(i int32) []int32 {
	if !g.live[i] {
		panic(fmt.Sprintf("Neighbors(%d): dead slot", i))
	}
	return g.adj[i]
}

func (g *testGraph) Features(i int32) []float32 {
	if !g.live[i] {
		panic(fmt.Sprintf("Features(%d): dead slot", i))
	}
	return g.feat[i]
}

func (g *testGraph) randomFeatures(rng *rand.Rand) []float32 {
	f := make([]float32, g.F)
	if rng.IntN(8) == 0 {
		return f // an all-zero row: row normalisation keeps it 0
	}
	for j := range f {
		if rng.IntN(3) > 0 {
			f[j] = float32(rng.Float64() * 2)
		}
	}
	return f
}

// addNode adds a node, reusing a dead slot half of the time.
func (g *testGraph) addNode(rng *rand.Rand) (int32, Change) {
	var v int32
	if len(g.free) > 0 && rng.IntN(2) == 0 {
		i := rng.IntN(len(g.free))
		v = g.free[i]
		g.free[i] = g.free[len(g.free)-1]
		g.free = g.free[:len(g.free)-1]
	} else {
		v = int32(len(g.live))
		g.live = append(g.live, false)
		g.adj = append(g.adj, nil)
		g.feat = append(g.feat, nil)
	}
	g.live[v] = true
	g.adj[v] = g.adj[v][:0]
	g.feat[v] = g.randomFeatures(rng)
	return v, Change{Kind: NodeAdded, U: v}
}

// removeNode removes v: its links first (as EdgeRemoved), then the node.
func (g *testGraph) removeNode(v int32, out []Change) []Change {
	for i := 0; i < len(g.listed); {
		e := g.listed[i]
		if e[0] == v || e[1] == v {
			out = append(out, g.removeListed(i))
			continue
		}
		i++
	}
	g.live[v] = false
	g.free = append(g.free, v)
	return append(out, Change{Kind: NodeRemoved, U: v})
}

func (g *testGraph) addEdge(u, v int32) Change {
	g.listed = append(g.listed, [2]int32{u, v})
	if u != v {
		g.adj[u] = append(g.adj[u], v)
		g.adj[v] = append(g.adj[v], u)
	}
	return Change{Kind: EdgeAdded, U: u, V: v}
}

// removeListed removes listed edge i (swap-remove everywhere).
func (g *testGraph) removeListed(i int) Change {
	e := g.listed[i]
	g.listed[i] = g.listed[len(g.listed)-1]
	g.listed = g.listed[:len(g.listed)-1]
	u, v := e[0], e[1]
	if u != v {
		dropOne(&g.adj[u], v)
		dropOne(&g.adj[v], u)
	}
	return Change{Kind: EdgeRemoved, U: u, V: v}
}

func dropOne(a *[]int32, x int32) {
	s := *a
	i := slices.Index(s, x)
	s[i] = s[len(s)-1]
	*a = s[:len(s)-1]
}

func (g *testGraph) liveNodes() []int32 {
	var out []int32
	for i, l := range g.live {
		if l {
			out = append(out, int32(i))
		}
	}
	return out
}

func (g *testGraph) randomLive(rng *rand.Rand) int32 {
	for {
		v := int32(rng.IntN(len(g.live)))
		if g.live[v] {
			return v
		}
	}
}

// newTestGraph makes n nodes and m random listed edges (some duplicates,
// some self loops), with a few hubs: a third of the endpoints are drawn
// from the first n/10 nodes.
func newTestGraph(rng *rand.Rand, F, n, m int) *testGraph {
	g := &testGraph{F: F}
	for range n {
		g.addNode(rng)
	}
	for range m {
		u, v := g.endpoint(rng), g.endpoint(rng)
		if rng.IntN(40) == 0 {
			v = u
		}
		g.addEdge(u, v)
	}
	return g
}

func (g *testGraph) endpoint(rng *rand.Rand) int32 {
	if rng.IntN(3) == 0 {
		for range 10 {
			v := int32(rng.IntN(max(1, len(g.live)/10)))
			if g.live[v] {
				return v
			}
		}
	}
	return g.randomLive(rng)
}

// mixWeights is how often each change kind is drawn (out of their sum):
// edge added, edge removed, node added, node removed, features changed.
type mixWeights [5]int

// randomBatch changes g by k random changes and returns them as Apply
// wants them.
func (g *testGraph) randomBatch(rng *rand.Rand, k int, mix mixWeights) []Change {
	total := 0
	for _, w := range mix {
		total += w
	}
	var out []Change
	for range k {
		r := rng.IntN(total)
		kind := 0
		for r >= mix[kind] {
			r -= mix[kind]
			kind++
		}
		switch kind {
		case 0:
			u, v := g.endpoint(rng), g.endpoint(rng)
			switch {
			case rng.IntN(30) == 0:
				v = u // a listed self loop: counts for nothing
			case rng.IntN(8) == 0 && len(g.listed) > 0:
				e := g.listed[rng.IntN(len(g.listed))] // a duplicate
				u, v = e[0], e[1]
			}
			out = append(out, g.addEdge(u, v))
		case 1:
			if len(g.listed) > 0 {
				out = append(out, g.removeListed(rng.IntN(len(g.listed))))
			}
		case 2:
			v, c := g.addNode(rng)
			out = append(out, c)
			for range rng.IntN(4) {
				out = append(out, g.addEdge(v, g.endpoint(rng)))
			}
		case 3:
			if len(g.live)-len(g.free) > 10 {
				out = g.removeNode(g.randomLive(rng), out)
			}
		case 4:
			v := g.randomLive(rng)
			g.feat[v] = g.randomFeatures(rng)
			out = append(out, Change{Kind: FeaturesChanged, U: v})
		}
	}
	return out
}

// randomNetwork makes a Network with random weights.
func randomNetwork(rng *rand.Rand, agg gcn.Aggregation, widths []int, norm gcn.InputNorm) *gcn.Network {
	net := &gcn.Network{FeatureDim: widths[0], InputNorm: norm, Output: gcn.OutputSoftmax}
	for i := 1; i < len(widths); i++ {
		l := gcn.Layer{Aggregation: agg, In: widths[i-1], Out: widths[i], Activation: gcn.ActivationReLU}
		if i == len(widths)-1 {
			l.Activation = gcn.ActivationNone
		}
		scale := math.Sqrt(6 / float64(l.In+l.Out))
		l.Weight = make([]float32, l.In*l.Out)
		for j := range l.Weight {
			l.Weight[j] = float32((rng.Float64()*2 - 1) * scale)
		}
		if rng.IntN(4) > 0 {
			l.Bias = make([]float32, l.Out)
			for j := range l.Bias {
				l.Bias[j] = float32(rng.Float64() - 0.5)
			}
		}
		net.Layers = append(net.Layers, l)
	}
	return net
}

// reference is the from-scratch forward pass over the whole graph, in
// float64, straight from gcn/network.go's documentation and the listed
// edges: probabilities per slot (nil for a dead slot).
func reference(net *gcn.Network, g *testGraph) [][]float64 {
	n := len(g.live)
	// links: each listed edge u != v both ways; self loops count nothing.
	links := make([][]int32, n)
	for _, e := range g.listed {
		if e[0] != e[1] {
			links[e[0]] = append(links[e[0]], e[1])
			links[e[1]] = append(links[e[1]], e[0])
		}
	}
	x := make([][]float64, n)
	for v := range n {
		if !g.live[v] {
			continue
		}
		x[v] = make([]float64, net.FeatureDim)
		sum := 0.0
		for j, f := range g.feat[v] {
			x[v][j] = float64(f)
			sum += float64(f)
		}
		if net.InputNorm == gcn.InputNormRow {
			for j := range x[v] {
				if sum == 0 {
					x[v][j] = 0
				} else {
					x[v][j] /= sum
				}
			}
		}
	}
	for _, l := range net.Layers {
		h := make([][]float64, n)
		for v := range n {
			if x[v] == nil {
				continue
			}
			h[v] = make([]float64, l.Out)
			for j := range l.Out {
				for k := range l.In {
					h[v][j] += x[v][k] * float64(l.Weight[k*l.Out+j])
				}
			}
		}
		out := make([][]float64, n)
		for d := range n {
			if x[d] == nil {
				continue
			}
			deg := float64(1 + len(links[d]))
			a := make([]float64, l.Out)
			for j := range a {
				switch l.Aggregation {
				case gcn.AggregationGCN:
					sum := h[d][j] / math.Sqrt(deg)
					for _, s := range links[d] {
						sum += h[s][j] / math.Sqrt(float64(1+len(links[s])))
					}
					a[j] = sum / math.Sqrt(deg)
				case gcn.AggregationMean, gcn.AggregationSum:
					sum := h[d][j]
					for _, s := range links[d] {
						sum += h[s][j]
					}
					if l.Aggregation == gcn.AggregationMean {
						sum /= deg
					}
					a[j] = sum
				}
				if l.Bias != nil {
					a[j] += float64(l.Bias[j])
				}
				if l.Activation == gcn.ActivationReLU && a[j] < 0 {
					a[j] = 0
				}
			}
			out[d] = a
		}
		x = out
	}
	for v := range n {
		if x[v] == nil {
			continue
		}
		m := math.Inf(-1)
		for _, z := range x[v] {
			m = max(m, z)
		}
		sum := 0.0
		for j, z := range x[v] {
			x[v][j] = math.Exp(z - m)
			sum += x[v][j]
		}
		for j := range x[v] {
			x[v][j] /= sum
		}
	}
	return x
}

// checkNodes compares the state's probabilities of nodes with want and
// returns the largest absolute difference.
func checkNodes(t *testing.T, s *State, nodes []int32, want [][]float64, tol float64, what string) float64 {
	t.Helper()
	C := s.net.NumClasses()
	got := make([]float32, len(nodes)*C)
	if err := s.Probabilities(nodes, got); err != nil {
		t.Fatalf("%s: Probabilities: %v", what, err)
	}
	worst := 0.0
	for i, v := range nodes {
		for j := range C {
			d := math.Abs(float64(got[i*C+j]) - want[v][j])
			if !(d <= tol) {
				t.Fatalf("%s: node %d class %d: got %v, want %v (diff %.3g > %g)", what, v, j, got[i*C+j], want[v][j], d, tol)
			}
			worst = max(worst, d)
		}
	}
	return worst
}

// checkLinks compares the published view's links with the topology: for
// every live slot the distinct neighbours with their multiplicities, the
// pending hubs (and only they) in the prefix, and the degree 1 + listings.
func checkLinks(t *testing.T, s *State, g *testGraph, what string) {
	t.Helper()
	vw := s.views[s.active.Load()]
	for v := range g.live {
		if !g.live[v] {
			if len(vw.links[v]) != 0 || vw.deg[v] != 0 {
				t.Fatalf("%s: dead slot %d: %d links, degree %d in the state", what, v, len(vw.links[v]), vw.deg[v])
			}
			continue
		}
		want := map[int32]int32{}
		for _, u := range g.adj[v] {
			want[u]++
		}
		got := map[int32]int32{}
		listings := int32(0)
		for i, e := range vw.links[v] {
			if _, dup := got[e.u]; dup {
				t.Fatalf("%s: slot %d lists neighbour %d twice", what, v, e.u)
			}
			got[e.u] = e.m
			listings += e.m
			pending := vw.last != nil && vw.last.pend[e.u] >= 0
			if pending != (i < int(vw.npend[v])) {
				t.Fatalf("%s: slot %d: neighbour %d at %d, pending %v, but the prefix has %d", what, v, e.u, i, pending, vw.npend[v])
			}
			if pending && e.k != vw.last.pend[e.u] {
				t.Fatalf("%s: slot %d: pending neighbour %d listed with index %d, pends at %d", what, v, e.u, e.k, vw.last.pend[e.u])
			}
		}
		if m := vw.linkPos[v]; m != nil {
			if len(m) != len(vw.links[v]) {
				t.Fatalf("%s: slot %d: %d links indexed, %d listed", what, v, len(m), len(vw.links[v]))
			}
			for i, e := range vw.links[v] {
				if m[e.u] != int32(i) {
					t.Fatalf("%s: slot %d: neighbour %d at %d, indexed at %d", what, v, e.u, i, m[e.u])
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: slot %d: links %v in the state, %v in the topology", what, v, got, want)
		}
		if vw.deg[v] != 1+listings {
			t.Fatalf("%s: slot %d: degree %d, want 1 + %d listings", what, v, vw.deg[v], listings)
		}
	}
}
