// Package graphstore tests stored graphs' durability with the real binary:
// deltas streamed, the server SIGKILLed at random moments, restarted on the
// same --graph-store, and the graph compared with what was acknowledged.
package graphstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/client"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphs/store"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

const featureDim = 34 // the karate model's

// canonical is a graph's content independent of order and slots: sorted
// nodes with features, sorted edges with each link's ends ordered.
func canonical(nodes []graphs.Node, edges []graphs.Edge) string {
	ns := make([]string, len(nodes))
	for i, n := range nodes {
		ns[i] = fmt.Sprint(n.ID, n.Features)
	}
	es := make([]string, len(edges))
	for j, e := range edges {
		es[j] = min(e.Source, e.Target) + "-" + max(e.Source, e.Target)
	}
	slices.Sort(ns)
	slices.Sort(es)
	return strings.Join(ns, ";") + "|" + strings.Join(es, ";")
}

func canonicalGraph(g *graphs.Graph) string {
	var nodes []graphs.Node
	var edges []graphs.Edge
	g.ExportNodes(1024, func(ns []graphs.Node) error { nodes = append(nodes, ns...); return nil })
	g.ExportEdges(1024, func(es []graphs.Edge) error { edges = append(edges, es...); return nil })
	return canonical(nodes, edges)
}

func exported(t *testing.T, ctx context.Context, gc gcnpb.GraphServiceClient, id string) (string, uint64) {
	t.Helper()
	stream, err := gc.ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: id})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []graphs.Node
	var edges []graphs.Edge
	var rev uint64
	for {
		c, err := stream.Recv()
		if err != nil {
			if status := err.Error(); !strings.Contains(status, "EOF") {
				t.Fatalf("ExportGraph: %v", err)
			}
			break
		}
		if c.Info != nil {
			rev = c.Info.Revision
		}
		for _, n := range c.Nodes {
			nodes = append(nodes, graphs.Node{ID: n.Id, Features: n.Features})
		}
		for _, e := range c.Edges {
			edges = append(edges, graphs.Edge{Source: e.SourceId, Target: e.TargetId})
		}
	}
	return canonical(nodes, edges), rev
}

// nextDelta makes a random delta of every kind against g.
func nextDelta(r *rand.Rand, g *graphs.Graph, serial int) *graphs.Delta {
	d := &graphs.Delta{IdempotencyKey: fmt.Sprintf("d%d", serial)}
	live := func() string {
		for {
			if s := int32(r.IntN(g.NumSlots())); g.Live(s) {
				return g.ID(s)
			}
		}
	}
	feats := func() []float32 {
		x := make([]float32, featureDim)
		x[r.IntN(featureDim)] = 1
		return x
	}
	if r.IntN(2) == 0 {
		id := live()
		s, _ := g.Slot(id)
		if nb := g.Neighbors(s); len(nb) > 0 {
			d.RemoveEdges = append(d.RemoveEdges, graphs.Edge{Source: g.ID(nb[r.IntN(len(nb))]), Target: id})
		}
	}
	removed := ""
	if r.IntN(8) == 0 && g.NumNodes() > 50 {
		removed = live()
		d.RemoveNodes = []string{removed}
	}
	d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: fmt.Sprintf("n%d", serial), Features: feats()})
	if id := live(); id != removed && r.IntN(2) == 0 {
		d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: id, Features: feats()})
	}
	for range 5 {
		a, b := live(), live()
		if a != removed && b != removed {
			d.AddEdges = append(d.AddEdges, graphs.Edge{Source: a, Target: b})
		}
	}
	d.AddEdges = append(d.AddEdges, graphs.Edge{Source: d.UpsertNodes[0].ID, Target: d.UpsertNodes[0].ID})
	return d
}

func toProto(id string, d *graphs.Delta) *gcnpb.DeltaRequest {
	m := &gcnpb.DeltaRequest{GraphId: id, RemoveNodes: d.RemoveNodes, IdempotencyKey: d.IdempotencyKey}
	for _, n := range d.UpsertNodes {
		m.UpsertNodes = append(m.UpsertNodes, &gcnpb.Node{Id: n.ID, Features: n.Features})
	}
	for _, e := range d.AddEdges {
		m.AddEdges = append(m.AddEdges, &gcnpb.Edge{SourceId: e.Source, TargetId: e.Target})
	}
	for _, e := range d.RemoveEdges {
		m.RemoveEdges = append(m.RemoveEdges, &gcnpb.Edge{SourceId: e.Source, TargetId: e.Target})
	}
	return m
}

func apply(t *testing.T, g *graphs.Graph, d *graphs.Delta) {
	t.Helper()
	p, err := g.Prepare(d, graphs.Limits{})
	if err != nil {
		t.Fatalf("reference graph refuses the delta: %v", err)
	}
	g.Apply(p)
}

// TestGraphStoreCrash streams deltas to the real binary, SIGKILLs it at 20
// random moments and restarts it on the same store each time: the graph
// holds every acknowledged delta (nothing lost) and at most the one delta
// in flight at the kill, which its retry (same idempotency key) then
// applies exactly once (nothing extra). A small --graph-snapshot-bytes
// makes compactions happen between and during the kills.
func TestGraphStoreCrash(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", "karate_rf.onnx")
	env := []string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)}
	args := []string{"--model", model, "--graph-store", dir, "--graph-snapshot-bytes", "16384", "--drain-delay", "0"}
	r := rand.New(rand.NewPCG(18, 1))
	ref := graphs.New(featureDim)
	const id = "crash"
	serial := 0
	var inflight *graphs.Delta // sent, not acknowledged when the server died
	acked, committedInFlight, lostInFlight := 0, 0, 0
	var lastSent *graphs.Delta // the last delta sent, acknowledged or not
	kills := 20
	if testing.Short() {
		kills = 5
	}
	for round := 0; round <= kills; round++ {
		srv := servertest.Run(t, servertest.Options{Env: env, Args: args})
		conn := servertest.Dial(t, srv.Addr)
		gc := gcnpb.NewGraphServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)

		if round == 0 {
			init := &graphs.Delta{}
			for i := range 200 {
				init.UpsertNodes = append(init.UpsertNodes, graphs.Node{ID: fmt.Sprintf("s%d", i), Features: make([]float32, featureDim)})
			}
			for i := range 600 {
				init.AddEdges = append(init.AddEdges, graphs.Edge{Source: fmt.Sprintf("s%d", i%200), Target: fmt.Sprintf("s%d", (i*13+7)%200)})
			}
			apply(t, ref, init)
			m := toProto("", init)
			if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: id, Graph: &gcnpb.GraphData{Nodes: m.UpsertNodes, Edges: m.AddEdges}}); err != nil {
				t.Fatal(err)
			}
		} else {
			// After a kill: the store holds the acknowledged prefix, plus
			// perhaps the delta in flight.
			got, rev := exported(t, ctx, gc, id)
			want := canonicalGraph(ref)
			switch {
			case rev == ref.Revision() && got == want:
			case inflight != nil && rev == ref.Revision()+1:
				apply(t, ref, inflight)
				if got != canonicalGraph(ref) {
					t.Fatalf("round %d: revision %d holds the delta in flight, but the graph differs from the acknowledged prefix plus it", round, rev)
				}
				inflight = nil // committed before the kill: its retry below must be a duplicate
				committedInFlight++
			default:
				t.Fatalf("round %d: recovered revision %d (want %d, or %d with the delta in flight); contents equal: %v",
					round, rev, ref.Revision(), ref.Revision()+1, got == want)
			}
			if inflight != nil || serial > 0 {
				// Retry the last delta sent: applied once, whatever happened.
				last := inflight
				if last == nil {
					last = lastSent
				}
				res, err := gc.ApplyDelta(ctx, toProto(id, last))
				if err != nil {
					t.Fatalf("round %d: retry: %v", round, err)
				}
				if inflight != nil {
					if res.Duplicate {
						t.Fatalf("round %d: the delta in flight was not stored, but its retry says duplicate", round)
					}
					apply(t, ref, inflight)
					inflight = nil
					lostInFlight++
				} else if !res.Duplicate || res.Revision > ref.Revision() {
					t.Fatalf("round %d: retry of a stored delta: %v; want a duplicate", round, res)
				}
			}
		}
		if round == kills {
			got, rev := exported(t, ctx, gc, id)
			if rev != ref.Revision() || got != canonicalGraph(ref) {
				t.Fatalf("final: revision %d, want %d; contents equal: %v", rev, ref.Revision(), got == canonicalGraph(ref))
			}
			cancel()
			break
		}

		// Stream deltas until the kill.
		killAt := time.Duration(50+r.IntN(400)) * time.Millisecond
		done := make(chan struct{})
		go func() {
			time.Sleep(killAt)
			srv.Signal(t, syscall.SIGKILL)
			close(done)
		}()
		for {
			serial++
			d := nextDelta(r, ref, serial)
			lastSent = d
			_, err := gc.ApplyDelta(ctx, toProto(id, d))
			if err != nil {
				inflight = d
				break
			}
			apply(t, ref, d)
			acked++
		}
		<-done
		<-srv.Exited()
		cancel()
		conn.Close()
	}
	st, err := os.Stat(filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills, %d deltas acknowledged; the delta in flight at a kill was committed %d times, not %d times; final revision %d, %d nodes, %d edges; store file %d bytes",
		kills, acked, committedInFlight, lostInFlight, ref.Revision(), ref.NumNodes(), ref.NumEdges(), st.Size())
	// Compaction keeps the file near a few snapshots, not the whole log.
	if snap := int64(len(ref.AppendSnapshot(nil))); st.Size() > 8*snap+(1<<20) {
		t.Errorf("store file %d bytes for a %d-byte snapshot: compaction does not bound it", st.Size(), snap)
	}
}

// TestGraphStoreRecovery100k: a 100k-node, 500k-edge graph (F = 34) with
// deltas logged after its snapshot is ready again within 2 s of a restart
// (the server's "stored graphs recovered" log line times it), and
// SIGKILLed, too.
func TestGraphStoreRecovery100k(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", "karate_rf.onnx")
	env := []string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)}
	args := []string{"--model", model, "--graph-store", dir, "--max-request-bytes", "268435456"}
	srv := servertest.Run(t, servertest.Options{Env: env, Args: args})
	cl, err := client.Dial(srv.Addr, client.WithMaxSendBytes(256<<20), client.WithMaxReceiveBytes(256<<20))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if _, err := cl.LoadGraph(ctx, "big", graphwire.SyntheticGraph(100_000, 500_000, featureDim, 3), nil); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		d := &gcnpb.DeltaRequest{GraphId: "big"}
		for j := range 100 {
			d.AddEdges = append(d.AddEdges, &gcnpb.Edge{SourceId: fmt.Sprintf("n%d", (i*7919+j*31)%100_000), TargetId: fmt.Sprintf("n%d", (i*104729+j)%100_000)})
		}
		if _, err := cl.ApplyDelta(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	before, err := cl.GetGraph(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	srv.Signal(t, syscall.SIGKILL)
	<-srv.Exited()

	srv = servertest.Run(t, servertest.Options{Env: env, Args: args})
	toServing := srv.WaitServing(t, 60*time.Second)
	took := recoveryTime(t, srv.Log())
	cl, err = client.Dial(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	after, err := cl.GetGraph(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision || after.Nodes != before.Nodes || after.Edges != before.Edges {
		t.Fatalf("after kill and restart %v, before %v", after, before)
	}
	t.Logf("100k nodes, %d edges, revision %d: recovered in %v; exec to SERVING %v", after.Edges, after.Revision, took, toServing)
	if took > 2*time.Second {
		t.Errorf("recovery took %v, want <= 2s", took)
	}
}

// recoveryTime reads took=... from the "stored graphs recovered" log line.
func recoveryTime(t *testing.T, log string) time.Duration {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "stored graphs recovered") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "took="); ok {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				return d
			}
		}
	}
	t.Fatalf("no \"stored graphs recovered\" line in the log:\n%s", log)
	return 0
}
