package graphs_test

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gcnserve/gcnserve/client"
	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// tolerance is the bound between a stored graph's scores and
// full-graph inference.
const tolerance = 1e-5

// openRF opens a bundled model copy that carries receptive_field = 2
// (testdata/*_rf.onnx: model/*.onnx plus that one metadata key).
func openRF(t testing.TB, name string) *gcn.Model {
	t.Helper()
	return infertest.Open(t, filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", name))
}

func predictFunc(m *gcn.Model) graphs.PredictFunc {
	return func(n int, x []float32, ei []int64) ([]float32, int, error) {
		p, err := m.Predict(context.Background(), gcn.Tensors{NumNodes: n, Features: x, EdgeIndex: ei})
		return p.Probabilities, p.NumClasses, err
	}
}

// loadDelta is the delta that loads a GraphData into an empty graph.
func loadDelta(nodes []graphs.Node, edges []graphs.Edge) *graphs.Delta {
	return &graphs.Delta{UpsertNodes: nodes, AddEdges: edges}
}

func apply(t testing.TB, g *graphs.Graph, d *graphs.Delta) []graphs.Change {
	t.Helper()
	p, err := g.Prepare(d, graphs.Limits{})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return g.Apply(p)
}

// reference scores the whole graph as ProcessGraph would: the exported
// nodes and edges (self loops and duplicates included) through
// PredictGraph. It returns each live slot's probability row.
func reference(t testing.TB, m *gcn.Model, g *graphs.Graph) map[int32][]float32 {
	t.Helper()
	var gg gcn.Graph
	var slots []int32
	g.ExportNodes(4096, func(ns []graphs.Node) error {
		for _, n := range ns {
			gg.Nodes = append(gg.Nodes, gcn.Node{ID: n.ID, Features: n.Features})
			s, _ := g.Slot(n.ID)
			slots = append(slots, s)
		}
		return nil
	})
	g.ExportEdges(4096, func(es []graphs.Edge) error {
		for _, e := range es {
			gg.Edges = append(gg.Edges, gcn.Edge{Source: e.Source, Target: e.Target})
		}
		return nil
	})
	p, err := m.PredictGraph(context.Background(), gg)
	if err != nil {
		t.Fatalf("PredictGraph on the whole graph: %v", err)
	}
	out := make(map[int32][]float32, len(slots))
	c := p.NumClasses
	for i, s := range slots {
		out[s] = p.Probabilities[i*c : (i+1)*c]
	}
	return out
}

// randomDelta makes a delta of every kind against g's current state.
func randomDelta(r *rand.Rand, g *graphs.Graph, f int, next *int, size int) *graphs.Delta {
	d := &graphs.Delta{}
	live := func() (string, bool) {
		for range 64 {
			s := int32(r.IntN(g.NumSlots()))
			if g.Live(s) {
				return g.ID(s), true
			}
		}
		return "", false
	}
	feats := func() []float32 {
		x := make([]float32, f)
		for k := range x {
			if r.IntN(4) == 0 {
				x[k] = r.Float32()
			}
		}
		return x
	}
	// RemoveEdges: distinct pairs, one listing each.
	seen := map[[2]string]bool{}
	for range size {
		id, ok := live()
		if !ok {
			break
		}
		s, _ := g.Slot(id)
		if nb := g.Neighbors(s); len(nb) > 0 {
			e := graphs.Edge{Source: id, Target: g.ID(nb[r.IntN(len(nb))])}
			if r.IntN(2) == 0 {
				e.Source, e.Target = e.Target, e.Source
			}
			k := [2]string{min(e.Source, e.Target), max(e.Source, e.Target)}
			if !seen[k] {
				seen[k] = true
				d.RemoveEdges = append(d.RemoveEdges, e)
			}
		} else if g.SelfLoops(s) > 0 && !seen[[2]string{id, id}] {
			seen[[2]string{id, id}] = true
			d.RemoveEdges = append(d.RemoveEdges, graphs.Edge{Source: id, Target: id})
		}
	}
	removed := map[string]bool{}
	for range 1 + size/10 {
		if id, ok := live(); ok && !removed[id] {
			removed[id] = true
			d.RemoveNodes = append(d.RemoveNodes, id)
		}
	}
	upserted := map[string]bool{}
	var ends []string
	for range 1 + size/5 {
		var id string
		if r.IntN(2) == 0 {
			id = "new" + strconv.Itoa(*next)
			*next++
		} else if l, ok := live(); ok {
			id = l
		}
		if id != "" && !upserted[id] {
			upserted[id] = true
			d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: id, Features: feats()})
			ends = append(ends, id)
		}
	}
	for range size {
		if id, ok := live(); ok && !removed[id] {
			ends = append(ends, id)
		}
	}
	for range size {
		if len(ends) == 0 {
			break
		}
		a, b := ends[r.IntN(len(ends))], ends[r.IntN(len(ends))]
		if r.IntN(20) == 0 {
			b = a // a self loop now and then
		}
		d.AddEdges = append(d.AddEdges, graphs.Edge{Source: a, Target: b})
		if r.IntN(10) == 0 { // and a duplicate
			d.AddEdges = append(d.AddEdges, graphs.Edge{Source: b, Target: a})
		}
	}
	return d
}

// referenceTensors is reference through the model's tensors (g.Whole: each
// link once, self loops left out, as the model ignores them) instead of
// ProcessGraph's string graph: the same numbers at a fraction of the Go
// work, which the race detector slows tenfold.
func referenceTensors(t testing.TB, m *gcn.Model, g *graphs.Graph) map[int32][]float32 {
	t.Helper()
	w := g.Whole()
	p, err := m.Predict(context.Background(), gcn.Tensors{NumNodes: w.NumNodes(), Features: w.Features, EdgeIndex: w.EdgeIndex})
	if err != nil {
		t.Fatalf("Predict on the whole graph: %v", err)
	}
	out := make(map[int32][]float32, len(w.Slots))
	c := p.NumClasses
	for i, s := range w.Slots {
		out[s] = p.Probabilities[i*c : (i+1)*c]
	}
	return out
}

// checkExact scores random subsets of live nodes through Recompute and
// compares with full-graph inference (ProcessGraph's path; under -race,
// for big graphs, the tensor path).
func checkExact(t *testing.T, r *rand.Rand, m *gcn.Model, g *graphs.Graph, subsets, size int) {
	t.Helper()
	var ref map[int32][]float32
	if raceEnabled && g.NumNodes() > 10_000 {
		ref = referenceTensors(t, m, g)
	} else {
		ref = reference(t, m, g)
	}
	sc := &graphs.Recompute{Graph: g, Hops: 2, Predict: predictFunc(m)}
	c := m.Info().NumClasses
	for range subsets {
		var nodes []int32
		for len(nodes) < size {
			s := int32(r.IntN(g.NumSlots()))
			if g.Live(s) {
				nodes = append(nodes, s)
			}
		}
		nodes = append(nodes, nodes[0]) // a repeat is answered twice
		dst := make([]float32, len(nodes)*c)
		if err := sc.Probabilities(nodes, dst); err != nil {
			t.Fatalf("Probabilities: %v", err)
		}
		for i, s := range nodes {
			for k := range c {
				if got, want := dst[i*c+k], ref[s][k]; math.Abs(float64(got-want)) > tolerance {
					t.Fatalf("revision %d, node %q class %d: got %v, full graph gives %v", g.Revision(), g.ID(s), k, got, want)
				}
			}
		}
	}
}

func fromMessageGraph(t testing.TB, dir string) ([]graphs.Node, []graphs.Edge) {
	t.Helper()
	m, err := client.ReadCSVDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]graphs.Node, len(m.Nodes))
	for i, n := range m.Nodes {
		nodes[i] = graphs.Node{ID: n.Id, Features: n.Features}
	}
	edges := make([]graphs.Edge, len(m.Edges))
	for j, e := range m.Edges {
		edges[j] = graphs.Edge{Source: e.SourceId, Target: e.TargetId}
	}
	return nodes, edges
}

// TestStatefulExactCora: Cora loaded, then random deltas of every kind;
// after each, random node subsets scored from the stored graph equal
// full-graph inference within 1e-5.
func TestStatefulExactCora(t *testing.T) {
	m := openRF(t, "cora_rf.onnx")
	nodes, edges := fromMessageGraph(t, testenv.CoraDir(t))
	g := graphs.New(m.Info().FeatureDim)
	apply(t, g, loadDelta(nodes, edges))
	r := rand.New(rand.NewPCG(1, 2))
	next := 0
	checkExact(t, r, m, g, 5, 10)
	rounds := 12
	if raceEnabled {
		rounds = 3
	}
	for range rounds {
		apply(t, g, randomDelta(r, g, m.Info().FeatureDim, &next, 40))
		checkExact(t, r, m, g, 4, 1+r.IntN(20))
	}
}

// TestStatefulExactSynthetic100k: the same on a 100k-node, 500k-edge
// synthetic graph (uniform random links, self loops and repeats included).
func TestStatefulExactSynthetic100k(t *testing.T) {
	m := openRF(t, "karate_rf.onnx")
	f := m.Info().FeatureDim
	msg := graphwire.SyntheticGraph(100_000, 500_000, f, 7)
	nodes := make([]graphs.Node, len(msg.Nodes))
	for i, n := range msg.Nodes {
		nodes[i] = graphs.Node{ID: n.Id, Features: n.Features}
	}
	edges := make([]graphs.Edge, len(msg.Edges))
	for j, e := range msg.Edges {
		edges[j] = graphs.Edge{Source: e.SourceId, Target: e.TargetId}
	}
	g := graphs.New(f)
	apply(t, g, loadDelta(nodes, edges))
	if g.NumNodes() != 100_000 || g.NumEdges() != 500_000 {
		t.Fatalf("loaded %d nodes, %d edges; want 100000, 500000", g.NumNodes(), g.NumEdges())
	}
	r := rand.New(rand.NewPCG(3, 4))
	next := 0
	rounds := 3
	if raceEnabled {
		rounds = 1
	}
	for range rounds {
		apply(t, g, randomDelta(r, g, f, &next, 200))
		checkExact(t, r, m, g, 3, 10)
	}
}

// TestExtractInducedIsNotEnough shows why Extract keeps every link of the
// k-hop nodes: the graph induced on the k-hop nodes scores differently
// from the whole graph, Extract's subgraph does not.
func TestExtractInducedIsNotEnough(t *testing.T) {
	m := openRF(t, "karate_rf.onnx")
	f := m.Info().FeatureDim
	g := graphs.New(f)
	// A path a - b - c - d - e plus a fan at d: scoring a with k = 2
	// reaches c, whose degree counts its link to d.
	var nodes []graphs.Node
	for i, id := range []string{"a", "b", "c", "d", "e", "x", "y"} {
		x := make([]float32, f)
		x[i%f] = 1
		nodes = append(nodes, graphs.Node{ID: id, Features: x})
	}
	edges := []graphs.Edge{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"c", "x"}, {"c", "y"}, {"x", "y"}}
	apply(t, g, loadDelta(nodes, edges))
	a, _ := g.Slot("a")
	ref := reference(t, m, g)
	sub := g.Extract([]int32{a}, 2)
	p, err := m.Predict(context.Background(), gcn.Tensors{NumNodes: sub.NumNodes(), Features: sub.Features, EdgeIndex: sub.EdgeIndex})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(p.Probabilities[:2], ref[a]); d > tolerance {
		t.Fatalf("Extract: differs from the whole graph by %g", d)
	}
	// Induced on the 2-hop ball {a, b, c}: c loses its links to d, x, y.
	var ind gcn.Graph
	for _, id := range []string{"a", "b", "c"} {
		s, _ := g.Slot(id)
		ind.Nodes = append(ind.Nodes, gcn.Node{ID: id, Features: g.Features(s)})
	}
	ind.Edges = []gcn.Edge{{Source: "a", Target: "b"}, {Source: "b", Target: "c"}}
	pi, err := m.PredictGraph(context.Background(), ind)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(pi.Probabilities[:2], ref[a]); d <= tolerance {
		t.Fatalf("the induced 2-hop graph agrees with the whole graph (diff %g): the example does not show the point", d)
	}
	t.Logf("node a: induced 2-hop graph off by %.3g, Extract's subgraph by %.3g",
		maxDiff(pi.Probabilities[:2], ref[a]), maxDiff(p.Probabilities[:2], ref[a]))
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}
