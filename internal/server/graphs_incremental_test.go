package server

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// Stored graphs on a model with a verified layer description (the bundled
// karate and cora models carry 'layers' and 'receptive_field') score
// through the incremental engine; these tests hold it to ProcessGraph on
// the whole current graph.

// mirror is the test's own copy of a stored graph, from which it draws
// valid random deltas of every kind.
type mirror struct {
	rng      *rand.Rand
	features int
	nodes    map[string]bool
	order    []string    // node ids, for random picks (may hold removed ids)
	edges    [][2]string // listed edges, self loops and duplicates included
	next     int
}

func newMirror(seed uint64, features, nodes, edges int) (*mirror, *gcnpb.GraphData) {
	m := &mirror{rng: rand.New(rand.NewPCG(seed, 7)), features: features, nodes: map[string]bool{}}
	g := &gcnpb.GraphData{}
	for range nodes {
		g.Nodes = append(g.Nodes, m.newNode())
	}
	for range edges {
		e := m.randomEdge()
		g.Edges = append(g.Edges, edge(e[0], e[1]))
		m.edges = append(m.edges, e)
	}
	return m, g
}

func (m *mirror) row() []float32 { return m.rowFrom(m.rng) }

// rowFrom draws a feature row, a quarter of its values non-zero.
func (m *mirror) rowFrom(rng *rand.Rand) []float32 {
	f := make([]float32, m.features)
	for j := range f {
		if rng.IntN(4) == 0 {
			f[j] = rng.Float32()
		}
	}
	return f
}

func (m *mirror) newNode() *gcnpb.Node {
	id := fmt.Sprintf("n%d", m.next)
	m.next++
	m.nodes[id] = true
	m.order = append(m.order, id)
	return &gcnpb.Node{Id: id, Features: m.row()}
}

func (m *mirror) pick() string {
	for {
		if id := m.order[m.rng.IntN(len(m.order))]; m.nodes[id] {
			return id
		}
	}
}

func (m *mirror) randomEdge() [2]string {
	u := m.pick()
	switch m.rng.IntN(20) {
	case 0:
		return [2]string{u, u} // a self loop: listed, counts for nothing
	case 1:
		if len(m.edges) > 0 {
			return m.edges[m.rng.IntN(len(m.edges))] // a duplicate link
		}
	}
	return [2]string{u, m.pick()}
}

// delta draws a random valid delta: removed edges, removed nodes (with
// their edges), features changed, new nodes, added edges.
func (m *mirror) delta(id string) *gcnpb.DeltaRequest {
	d := &gcnpb.DeltaRequest{GraphId: id}
	for range m.rng.IntN(4) {
		if len(m.edges) == 0 {
			break
		}
		k := m.rng.IntN(len(m.edges))
		e := m.edges[k]
		if m.rng.IntN(2) == 0 {
			e[0], e[1] = e[1], e[0] // a link is undirected
		}
		d.RemoveEdges = append(d.RemoveEdges, edge(e[0], e[1]))
		m.edges = append(m.edges[:k], m.edges[k+1:]...)
	}
	if m.rng.IntN(3) == 0 && len(m.nodes) > 10 {
		r := m.pick()
		d.RemoveNodes = append(d.RemoveNodes, r)
		delete(m.nodes, r)
		kept := m.edges[:0]
		for _, e := range m.edges {
			if e[0] != r && e[1] != r {
				kept = append(kept, e)
			}
		}
		m.edges = kept
	}
	upserted := map[string]bool{}
	for range m.rng.IntN(3) {
		if id := m.pick(); !upserted[id] { // an id at most once per delta
			upserted[id] = true
			d.UpsertNodes = append(d.UpsertNodes, &gcnpb.Node{Id: id, Features: m.row()})
		}
	}
	for range m.rng.IntN(3) {
		d.UpsertNodes = append(d.UpsertNodes, m.newNode())
	}
	for range m.rng.IntN(6) {
		e := m.randomEdge()
		d.AddEdges = append(d.AddEdges, edge(e[0], e[1]))
		m.edges = append(m.edges, e)
	}
	return d
}

func (m *mirror) subset(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = m.pick()
	}
	return ids
}

func (m *mirror) live() []string {
	ids := make([]string, 0, len(m.nodes))
	for id := range m.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// checkExact compares ScoreNodes of ids (nil: every node), class
// probabilities and all, with ProcessGraph on the whole exported graph,
// within 1e-5.
func checkExact(t *testing.T, ctx context.Context, gc gcnpb.GraphServiceClient, pc gcnpb.GCNServiceClient, id string, ids []string) {
	t.Helper()
	stream, err := gc.ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: id})
	if err != nil {
		t.Fatal(err)
	}
	whole := &gcnpb.GraphData{IncludePredictions: true}
	for {
		c, err := stream.Recv()
		if err != nil {
			break
		}
		whole.Nodes = append(whole.Nodes, c.Nodes...)
		whole.Edges = append(whole.Edges, c.Edges...)
	}
	ref, err := pc.ProcessGraph(ctx, whole)
	if err != nil {
		t.Fatalf("ProcessGraph on the exported graph: %v", err)
	}
	want := map[string][]float32{}
	for _, p := range ref.Predictions {
		want[p.Id] = p.Probabilities
	}
	if ids == nil {
		for _, n := range whole.Nodes {
			ids = append(ids, n.Id)
		}
	}
	res, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: id, NodeIds: ids, IncludePredictions: true})
	if err != nil {
		t.Fatalf("ScoreNodes: %v", err)
	}
	if len(res.Predictions) != len(ids) {
		t.Fatalf("ScoreNodes answered %d predictions for %d ids", len(res.Predictions), len(ids))
	}
	for i, p := range res.Predictions {
		w := want[ids[i]]
		if p.Id != ids[i] || len(p.Probabilities) != len(w) || len(w) == 0 {
			t.Fatalf("prediction %d: id %q with %d probabilities, want %q with %d", i, p.Id, len(p.Probabilities), ids[i], len(w))
		}
		for k := range w {
			if d := math.Abs(float64(p.Probabilities[k] - w[k])); d > 1e-5 {
				t.Fatalf("node %s class %d: stored-graph probability %v, ProcessGraph %v (|diff| %.2g)", ids[i], k, p.Probabilities[k], w[k], d)
			}
		}
	}
}

func wantMode(t *testing.T, ctx context.Context, gc gcnpb.GraphServiceClient, id, mode string) *gcnpb.GraphInfo {
	t.Helper()
	info, err := gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: id})
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode != mode {
		t.Fatalf("GetGraph: mode %q, want %q (%v)", info.Mode, mode, info)
	}
	return info
}

// TestGraphIncrementalExact: on the bundled karate and cora models a stored
// graph is in incremental mode, and after random deltas of every kind the
// scores of random subsets, and at the end of every node, equal
// ProcessGraph on the whole current graph within 1e-5.
func TestGraphIncrementalExact(t *testing.T) {
	root := testenv.RepoRoot(t)
	for _, tc := range []struct {
		model           string
		features        int
		nodes, edges, n int
	}{
		{"karate.onnx", 34, 150, 400, 60},
		{"cora.onnx", 1433, 120, 300, 30},
	} {
		t.Run(tc.model, func(t *testing.T) {
			conn := startRealConn(t, func(c *Config) { c.ModelPath = filepath.Join(root, "model", tc.model) })
			gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			m, g := newMirror(1, tc.features, tc.nodes, tc.edges)
			created, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "g", Graph: g})
			if err != nil {
				t.Fatal(err)
			}
			if got := wantMode(t, ctx, gc, "g", "incremental"); created.Mode != "incremental" || created.Bytes != got.Bytes {
				t.Fatalf("CreateGraph answered mode %q, %d bytes; GetGraph says %q, %d bytes", created.Mode, created.Bytes, got.Mode, got.Bytes)
			}
			checkExact(t, ctx, gc, pc, "g", m.subset(10))
			for i := range tc.n {
				if _, err := gc.ApplyDelta(ctx, m.delta("g")); err != nil {
					t.Fatalf("delta %d: %v", i, err)
				}
				if i%3 == 0 {
					checkExact(t, ctx, gc, pc, "g", m.subset(1+m.rng.IntN(12)))
				}
			}
			checkExact(t, ctx, gc, pc, "g", m.live())
			// A hub: one node linked to 600 others in one delta (past
			// incremental.DefaultLazyDegree), then half of them removed.
			hub := m.pick()
			d := &gcnpb.DeltaRequest{GraphId: "g"}
			for range 600 {
				e := [2]string{hub, m.pick()}
				m.edges = append(m.edges, e)
				d.AddEdges = append(d.AddEdges, edge(e[0], e[1]))
			}
			if _, err := gc.ApplyDelta(ctx, d); err != nil {
				t.Fatalf("hub delta: %v", err)
			}
			checkExact(t, ctx, gc, pc, "g", append(m.subset(10), hub))
			d = &gcnpb.DeltaRequest{GraphId: "g"}
			for _, e := range m.edges[len(m.edges)-300:] {
				d.RemoveEdges = append(d.RemoveEdges, edge(e[0], e[1]))
			}
			m.edges = m.edges[:len(m.edges)-300]
			if _, err := gc.ApplyDelta(ctx, d); err != nil {
				t.Fatalf("hub removal delta: %v", err)
			}
			checkExact(t, ctx, gc, pc, "g", m.live())
			wantMode(t, ctx, gc, "g", "incremental")
		})
	}
}

// TestGraphIncrementalConcurrent: deltas of every kind and scores at once
// on an incremental graph (run it under -race): every score right after a
// delta's acknowledgement reflects it, and at the end every node's scores
// equal ProcessGraph on the whole graph.
func TestGraphIncrementalConcurrent(t *testing.T) {
	conn := startRealConn(t, nil) // the bundled karate model
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const initial = 200
	m, g := newMirror(2, 34, initial, 600)
	if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "c", Graph: g}); err != nil {
		t.Fatal(err)
	}
	wantMode(t, ctx, gc, "c", "incremental")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer touches the initial nodes (features, links) and
			// adds and removes only its own nodes and links, so its deltas
			// are valid in any interleaving.
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			base := func() string { return fmt.Sprintf("n%d", rng.IntN(initial)) }
			var mine []string
			var links [][2]string
			for k := range 25 {
				d := &gcnpb.DeltaRequest{GraphId: "c"}
				if len(links) > 0 && rng.IntN(2) == 0 {
					j := rng.IntN(len(links))
					d.RemoveEdges = append(d.RemoveEdges, edge(links[j][1], links[j][0]))
					links = append(links[:j], links[j+1:]...)
				}
				if len(mine) > 2 && rng.IntN(4) == 0 {
					r := mine[0]
					mine = mine[1:]
					d.RemoveNodes = append(d.RemoveNodes, r)
					kept := links[:0]
					for _, l := range links {
						if l[0] != r && l[1] != r {
							kept = append(kept, l)
						}
					}
					links = kept
				}
				id := fmt.Sprintf("w%d-%d", w, k)
				mine = append(mine, id)
				d.UpsertNodes = append(d.UpsertNodes, &gcnpb.Node{Id: id, Features: m.rowFrom(rng)},
					&gcnpb.Node{Id: base(), Features: m.rowFrom(rng)})
				for range 1 + rng.IntN(3) {
					l := [2]string{mine[rng.IntN(len(mine))], base()}
					links = append(links, l)
					d.AddEdges = append(d.AddEdges, edge(l[0], l[1]))
				}
				d.AddEdges = append(d.AddEdges, edge(base(), base()))
				if w == 0 && k == 10 {
					// One big delta (the engine's parallel path) that makes
					// n0 a hub past incremental.DefaultLazyDegree (its
					// changes pending until read) while readers score n1-n4
					// and the writers n0.
					for range 700 {
						d.AddEdges = append(d.AddEdges, edge("n0", base()))
					}
				}
				if err := applyThenScore(ctx, gc, d, id, "n0"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 60 {
				if _, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "c", NodeIds: []string{"n1", "n2", "n3", "n4"}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	info := wantMode(t, ctx, gc, "c", "incremental")
	if info.Revision != 76 {
		t.Fatalf("final revision %d, want 76", info.Revision)
	}
	checkExact(t, ctx, gc, pc, "c", nil)
}

// TestGraphIncrementalRestart: after a restart on the same --graph-store
// the recovered graph is in incremental mode again (its state rebuilt from
// the recovered graph), exact, and keeps being exact under new deltas.
func TestGraphIncrementalRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.GraphStore = dir
	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, stop := serveStoppable(t, s1)
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, g := newMirror(3, 34, 120, 300)
	if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "r", Graph: g}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := gc.ApplyDelta(ctx, m.delta("r")); err != nil {
			t.Fatalf("delta %d: %v", i, err)
		}
	}
	checkExact(t, ctx, gc, pc, "r", m.subset(10))
	before := wantMode(t, ctx, gc, "r", "incremental")
	stop()

	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn2, _ := serveStoppable(t, s2)
	gc, pc = gcnpb.NewGraphServiceClient(conn2), gcnpb.NewGCNServiceClient(conn2)
	after := wantMode(t, ctx, gc, "r", "incremental")
	if after.Revision != before.Revision || after.Nodes != before.Nodes || after.Edges != before.Edges {
		t.Fatalf("recovered %v, before the restart %v", after, before)
	}
	checkExact(t, ctx, gc, pc, "r", m.live())
	for i := range 10 {
		if _, err := gc.ApplyDelta(ctx, m.delta("r")); err != nil {
			t.Fatalf("delta %d after the restart: %v", i, err)
		}
	}
	checkExact(t, ctx, gc, pc, "r", m.live())
}

// TestGraphIncrementalModelVersions: a new model version rebuilds the
// state (scores follow it exactly); a version without a layer description
// turns the graph to recompute, still exact; one with it turns it back.
func TestGraphIncrementalModelVersions(t *testing.T) {
	root := testenv.RepoRoot(t)
	repo := t.TempDir()
	publish(t, repo, "karate", "1", filepath.Join(root, "model", "karate.onnx"))
	cfg := testConfig(t)
	cfg.ModelRepository, cfg.RepositoryPollInterval = repo, 0
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := serveStoppable(t, s)
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, g := newMirror(4, 34, 100, 250)
	if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "v", Graph: g}); err != nil {
		t.Fatal(err)
	}
	ask := m.subset(8)
	v1, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "v", NodeIds: ask})
	if err != nil {
		t.Fatal(err)
	}
	inc := wantMode(t, ctx, gc, "v", "incremental")

	for _, step := range []struct {
		version, file, mode string
	}{
		{"2", filepath.Join(root, "internal", "server", "testdata", "karate_seed2_layers.onnx"), "incremental"},
		{"3", filepath.Join(root, "internal", "graphs", "testdata", "karate_rf.onnx"), "recompute"},
		{"4", filepath.Join(root, "model", "karate.onnx"), "incremental"},
	} {
		publish(t, repo, "karate", step.version, step.file)
		if err := s.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := gc.ApplyDelta(ctx, m.delta("v")); err != nil {
				t.Fatalf("version %s: delta %d: %v", step.version, i, err)
			}
		}
		res, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "v", NodeIds: m.subset(8)})
		if err != nil || res.ModelVersion != step.version {
			t.Fatalf("score after version %s was published: %v, %v", step.version, res, err)
		}
		info := wantMode(t, ctx, gc, "v", step.mode)
		if step.mode == "recompute" && info.Bytes >= inc.Bytes {
			t.Fatalf("version %s (recompute): graph counts %d bytes, as many as with its incremental state (%d)", step.version, info.Bytes, inc.Bytes)
		}
		checkExact(t, ctx, gc, pc, "v", m.live())
	}
	if v1.ModelVersion != "1" {
		t.Fatalf("first score on version %q, want 1", v1.ModelVersion)
	}
}

// TestGraphIncrementalBudget: the incremental state counts in
// --max-graph-bytes; a budget that holds the graph but not its state leaves
// it in recompute mode, exact.
func TestGraphIncrementalBudget(t *testing.T) {
	m, g := newMirror(5, 34, 300, 900)
	var sizes [2]int64
	for i, on := range []bool{false, true} {
		conn := startRealConn(t, func(c *Config) { c.GraphIncremental = on })
		gc := gcnpb.NewGraphServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "b", Graph: g}); err != nil {
			t.Fatal(err)
		}
		sizes[i] = wantMode(t, ctx, gc, "b", map[bool]string{false: "recompute", true: "incremental"}[on]).Bytes
	}
	if sizes[1] <= sizes[0] {
		t.Fatalf("graph bytes %d with incremental state, %d without: the state is not counted", sizes[1], sizes[0])
	}
	conn := startRealConn(t, func(c *Config) { c.MaxGraphBytes = (sizes[0] + sizes[1]) / 2 })
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "b", Graph: g}); err != nil {
		t.Fatal(err)
	}
	if info := wantMode(t, ctx, gc, "b", "recompute"); info.Bytes != sizes[0] {
		t.Fatalf("over budget for its state: graph counts %d bytes, want %d (the graph alone)", info.Bytes, sizes[0])
	}
	checkExact(t, ctx, gc, pc, "b", m.subset(10))
}
