package store_test

import (
	"reflect"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphs/store"
)

func TestStoreLogSnapshotLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := graphs.New(1)
	deltas := []*graphs.Delta{
		{UpsertNodes: []graphs.Node{{ID: "a", Features: []float32{1}}, {ID: "b", Features: []float32{2}}}, AddEdges: []graphs.Edge{{Source: "a", Target: "b"}}},
		{UpsertNodes: []graphs.Node{{ID: "c", Features: []float32{3}}}, AddEdges: []graphs.Edge{{Source: "c", Target: "c"}}, IdempotencyKey: "k"},
		{RemoveNodes: []string{"a"}, RemoveEdges: []graphs.Edge{{Source: "c", Target: "c"}}},
	}
	if err := s.Create("g1", []byte("meta"), 0, nil); err != nil {
		t.Fatal(err)
	}
	for i, d := range deltas {
		p, err := g.Prepare(d, graphs.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Append("g1", p.Revision, graphs.EncodeDelta(d)); err != nil {
			t.Fatal(err)
		}
		g.Apply(p)
		if i == 1 {
			if err := s.WriteSnapshot("g1", g.Revision(), g.AppendSnapshot(nil)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []store.Record
	if err := s.Load(func(r store.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "g1" || string(got[0].Meta) != "meta" || got[0].SnapRev != 2 || len(got[0].Log) != 1 || got[0].Log[0].Rev != 3 {
		t.Fatalf("loaded %+v; want g1 with meta, snapshot at 2, one delta at 3", got)
	}
	h, err := graphs.ReadSnapshot(got[0].Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	d, err := graphs.DecodeDelta(got[0].Log[0].Delta)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(graphs.EncodeDelta(d), graphs.EncodeDelta(deltas[2])) {
		t.Fatalf("decoded delta %+v, want %+v", d, deltas[2])
	}
	p, err := h.Prepare(d, graphs.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	h.Apply(p)
	if !reflect.DeepEqual(h.AppendSnapshot(nil), g.AppendSnapshot(nil)) {
		t.Fatal("snapshot + replayed log differs from the graph that wrote them")
	}
	// The key survived the snapshot: a retry is recognised.
	if p, err := h.Prepare(deltas[1], graphs.Limits{}); err != nil || !p.Duplicate || p.Revision != 2 {
		t.Fatalf("retry of the keyed delta: %+v, %v; want a duplicate of revision 2", p, err)
	}
	if err := s.Delete("g1"); err != nil {
		t.Fatal(err)
	}
}
