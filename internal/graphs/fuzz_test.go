package graphs_test

import (
	"bytes"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphs"
)

// FuzzDecodeDelta: any bytes either decode to a delta that encodes back to
// the same bytes, or are refused; never a panic or a huge allocation (the
// store's log is read at start, and a damaged file must fail cleanly).
func FuzzDecodeDelta(f *testing.F) {
	f.Add(graphs.EncodeDelta(&graphs.Delta{}))
	f.Add(graphs.EncodeDelta(&graphs.Delta{
		UpsertNodes:    []graphs.Node{{ID: "a", Features: []float32{1, 2}}},
		RemoveNodes:    []string{"b"},
		AddEdges:       []graphs.Edge{{Source: "a", Target: "c"}},
		RemoveEdges:    []graphs.Edge{{Source: "c", Target: "c"}},
		IdempotencyKey: "k",
	}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := graphs.DecodeDelta(b)
		if err != nil {
			return
		}
		if again := graphs.EncodeDelta(d); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", d, again, b)
		}
	})
}

// FuzzApplyDecodedDelta: a decoded delta, valid or not, applied to a small
// graph either is refused or leaves a graph whose snapshot reads back the
// same.
func FuzzApplyDecodedDelta(f *testing.F) {
	f.Add(graphs.EncodeDelta(&graphs.Delta{
		UpsertNodes: []graphs.Node{{ID: "d", Features: []float32{1, 2}}},
		RemoveNodes: []string{"b"},
		AddEdges:    []graphs.Edge{{Source: "a", Target: "d"}, {Source: "d", Target: "d"}},
		RemoveEdges: []graphs.Edge{{Source: "c", Target: "b"}},
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := graphs.DecodeDelta(b)
		if err != nil {
			return
		}
		g := graphs.New(2)
		base := &graphs.Delta{
			UpsertNodes: []graphs.Node{{ID: "a", Features: []float32{1, 0}}, {ID: "b", Features: []float32{0, 1}}, {ID: "c", Features: []float32{1, 1}}},
			AddEdges:    []graphs.Edge{{Source: "a", Target: "b"}, {Source: "c", Target: "b"}, {Source: "c", Target: "c"}},
		}
		p, err := g.Prepare(base, graphs.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		g.Apply(p)
		if p, err = g.Prepare(d, graphs.Limits{MaxNodes: 100, MaxEdges: 100}); err != nil {
			return
		}
		g.Apply(p)
		snap := g.AppendSnapshot(nil)
		h, err := graphs.ReadSnapshot(snap)
		if err != nil {
			t.Fatalf("snapshot of a valid graph does not read back: %v", err)
		}
		if !bytes.Equal(h.AppendSnapshot(nil), snap) {
			t.Fatal("snapshot does not round-trip")
		}
	})
}
