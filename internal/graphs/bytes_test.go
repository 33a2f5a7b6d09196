package graphs_test

import (
	"runtime"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestBytesEstimate measures the heap a 100k-node, 500k-edge, 16-feature
// graph holds, loaded by a delta and recovered from a snapshot, against
// Bytes() and against its raw bytes (ids, 4F per node, two int32 node
// indexes per edge): docs/STATEFUL.md quotes the figures.
func TestBytesEstimate(t *testing.T) {
	const n, e, f = 100_000, 500_000, 16
	base := heapAlloc()
	msg := graphwire.SyntheticGraph(n, e, f, 1)
	d := &graphs.Delta{}
	var raw int64
	for _, x := range msg.Nodes {
		d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: x.Id, Features: x.Features})
		raw += int64(len(x.Id)) + 4*f
	}
	for _, x := range msg.Edges {
		d.AddEdges = append(d.AddEdges, graphs.Edge{Source: x.SourceId, Target: x.TargetId})
	}
	raw += 8 * e
	g := graphs.New(f)
	p, err := g.Prepare(d, graphs.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	g.Apply(p)
	p, d, msg = nil, nil, nil
	loaded := int64(heapAlloc() - base)
	snap := g.AppendSnapshot(nil)
	est := g.Bytes()
	g = nil
	withSnap := heapAlloc()
	h, err := graphs.ReadSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	snapLen := uint64(len(snap))
	snap = nil
	recovered := int64(heapAlloc() - (withSnap - snapLen))
	t.Logf("100k nodes, 500k edges, F=16: raw %d B; held after load %d B (%.2fx raw), after recovery %d B (%.2fx raw); Bytes() says %d; snapshot %d B",
		raw, loaded, float64(loaded)/float64(raw), recovered, float64(recovered)/float64(raw), est, len(h.AppendSnapshot(nil)))
	t.Logf("per node (F=16, 6-byte ids) and per edge, after recovery: about %d B and %d B", (recovered-8*e)/n, 8)
	for _, m := range []struct {
		name string
		got  int64
	}{{"after load", loaded}, {"after recovery", recovered}} {
		if m.got > 2*raw {
			t.Errorf("%s the graph holds %d B, more than twice its raw %d B", m.name, m.got, raw)
		}
		if r := float64(est) / float64(m.got); r < 0.8 || r > 1.25 {
			t.Errorf("%s: Bytes() %d is %.2fx the measured %d", m.name, est, r, m.got)
		}
	}
	runtime.KeepAlive(h)
}
