package graphs_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphs"
)

func feat(v ...float32) []float32 { return v }

func small(t *testing.T) *graphs.Graph {
	t.Helper()
	g := graphs.New(2)
	apply(t, g, &graphs.Delta{
		UpsertNodes: []graphs.Node{{"a", feat(1, 0)}, {"b", feat(0, 1)}, {"c", feat(1, 1)}},
		AddEdges:    []graphs.Edge{{"a", "b"}, {"b", "c"}, {"b", "a"}, {"c", "c"}},
	})
	return g
}

func TestDeltaErrors(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name string
		d    graphs.Delta
		lim  graphs.Limits
		kind gcnerr.Kind
		msg  string
	}{
		{"empty id", graphs.Delta{UpsertNodes: []graphs.Node{{"", feat(1, 2)}}}, graphs.Limits{}, gcnerr.InvalidArgument, `node 0: empty id`},
		{"duplicate upsert", graphs.Delta{UpsertNodes: []graphs.Node{{"x", feat(1, 2)}, {"x", feat(1, 2)}}}, graphs.Limits{}, gcnerr.InvalidArgument, `node 1: duplicate id "x" (also node 0)`},
		{"feature count", graphs.Delta{UpsertNodes: []graphs.Node{{"x", feat(1)}}}, graphs.Limits{}, gcnerr.InvalidArgument, `node 0 ("x"): 1 features, model wants 2`},
		{"NaN", graphs.Delta{UpsertNodes: []graphs.Node{{"x", feat(1, nan)}}}, graphs.Limits{}, gcnerr.InvalidArgument, `node 0 ("x"): feature 1 is NaN`},
		{"unknown target", graphs.Delta{AddEdges: []graphs.Edge{{"a", "zz"}}}, graphs.Limits{}, gcnerr.InvalidArgument, `edge 0: target "zz" is not a node id`},
		{"edge to removed", graphs.Delta{RemoveNodes: []string{"c"}, AddEdges: []graphs.Edge{{"c", "a"}}}, graphs.Limits{}, gcnerr.InvalidArgument, `edge 0: source "c" is not a node id`},
		{"unknown remove", graphs.Delta{RemoveNodes: []string{"q"}}, graphs.Limits{}, gcnerr.InvalidArgument, `remove_nodes 0: "q" is not a node id`},
		{"remove twice", graphs.Delta{RemoveNodes: []string{"a", "a"}}, graphs.Limits{}, gcnerr.InvalidArgument, `remove_nodes 1: duplicate id "a" (also remove_nodes 0)`},
		{"unknown edge", graphs.Delta{RemoveEdges: []graphs.Edge{{"a", "c"}}}, graphs.Limits{}, gcnerr.InvalidArgument, `remove_edges 0: no edge "a" - "c" left to remove (the graph lists it 0 times)`},
		{"edge removed too often", graphs.Delta{RemoveEdges: []graphs.Edge{{"a", "b"}, {"b", "a"}, {"a", "b"}}}, graphs.Limits{}, gcnerr.InvalidArgument, `remove_edges 2: no edge "a" - "b" left to remove (the graph lists it 2 times)`},
		{"node limit", graphs.Delta{UpsertNodes: []graphs.Node{{"x", feat(1, 2)}}}, graphs.Limits{MaxNodes: 3}, gcnerr.TooLarge, `graph would have 4 nodes, limit is 3 (--max-nodes)`},
		{"edge limit", graphs.Delta{AddEdges: []graphs.Edge{{"a", "c"}}}, graphs.Limits{MaxEdges: 4}, gcnerr.TooLarge, `graph would have 5 edges, limit is 4 (--max-edges)`},
		{"expected revision", graphs.Delta{HasExpected: true, ExpectedRevision: 7}, graphs.Limits{}, gcnerr.Aborted, `expected revision 7, the graph is at revision 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := small(t)
			before := g.Bytes()
			_, err := g.Prepare(&tc.d, tc.lim)
			var e *gcnerr.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || e.Msg != tc.msg {
				t.Fatalf("got %v, want %v %q", err, tc.kind, tc.msg)
			}
			if g.Revision() != 1 || g.Bytes() != before || g.NumEdges() != 4 {
				t.Fatalf("a refused delta changed the graph")
			}
		})
	}
}

func TestDeltaEdgeLimitCountsRemovedNodesLinks(t *testing.T) {
	g := small(t) // 4 edges: a-b twice, b-c, c-c
	// Removing b takes 3 links with it: 1 left, +3 = 4 fits a limit of 4.
	d := &graphs.Delta{RemoveNodes: []string{"b"}, AddEdges: []graphs.Edge{{"a", "c"}, {"a", "c"}, {"c", "a"}}}
	p, err := g.Prepare(d, graphs.Limits{MaxEdges: 4})
	if err != nil {
		t.Fatal(err)
	}
	g.Apply(p)
	if g.NumEdges() != 4 {
		t.Fatalf("got %d edges, want 4", g.NumEdges())
	}
}

func TestDeltaChanges(t *testing.T) {
	g := small(t)
	a, _ := g.Slot("a")
	b, _ := g.Slot("b")
	c, _ := g.Slot("c")
	changes := apply(t, g, &graphs.Delta{
		RemoveEdges: []graphs.Edge{{"b", "a"}, {"c", "c"}},
		RemoveNodes: []string{"c"},
		UpsertNodes: []graphs.Node{{"a", feat(2, 2)}, {"d", feat(3, 3)}},
		AddEdges:    []graphs.Edge{{"d", "a"}, {"d", "d"}},
	})
	d, _ := g.Slot("d")
	want := []graphs.Change{
		{Kind: graphs.EdgeRemoved, U: b, V: a},
		{Kind: graphs.EdgeRemoved, U: c, V: b},
		{Kind: graphs.NodeRemoved, U: c},
		{Kind: graphs.FeaturesChanged, U: a},
		{Kind: graphs.NodeAdded, U: d},
		{Kind: graphs.EdgeAdded, U: d, V: a},
	}
	if !reflect.DeepEqual(changes, want) {
		t.Fatalf("changes:\n got %+v\nwant %+v", changes, want)
	}
	if d != c {
		t.Errorf("new node got slot %d, want the freed slot %d", d, c)
	}
	if g.Revision() != 2 || g.NumNodes() != 3 || g.NumEdges() != 3 || g.SelfLoops(d) != 1 {
		t.Fatalf("revision %d, %d nodes, %d edges, %d self loops at d; want 2, 3, 3, 1", g.Revision(), g.NumNodes(), g.NumEdges(), g.SelfLoops(d))
	}
	if got := g.Features(a); got[0] != 2 {
		t.Errorf("a's features %v, want [2 2]", got)
	}
	if !reflect.DeepEqual(sorted(g.Neighbors(a)), sorted([]int32{b, d})) {
		t.Errorf("a's neighbours %v, want b and d", g.Neighbors(a))
	}
}

func sorted(s []int32) []int32 {
	s = append([]int32(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestIdempotencyKey(t *testing.T) {
	g := small(t)
	d := &graphs.Delta{AddEdges: []graphs.Edge{{"a", "c"}}, IdempotencyKey: "k1"}
	for i := range 3 {
		p, err := g.Prepare(d, graphs.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Revision != 2 || p.Duplicate != (i > 0) {
			t.Fatalf("attempt %d: revision %d duplicate %v, want 2 %v", i, p.Revision, p.Duplicate, i > 0)
		}
		g.Apply(p)
	}
	if g.NumEdges() != 5 || g.Revision() != 2 {
		t.Fatalf("%d edges at revision %d after 3 attempts, want 5 at 2", g.NumEdges(), g.Revision())
	}
}

func TestExportRoundTrip(t *testing.T) {
	g := small(t)
	var nodes []graphs.Node
	var edges []graphs.Edge
	g.ExportNodes(2, func(ns []graphs.Node) error { nodes = append(nodes, ns...); return nil })
	g.ExportEdges(2, func(es []graphs.Edge) error { edges = append(edges, es...); return nil })
	h := graphs.New(2)
	apply(t, h, &graphs.Delta{UpsertNodes: nodes, AddEdges: edges})
	if h.NumNodes() != 3 || h.NumEdges() != 4 {
		t.Fatalf("round trip: %d nodes, %d edges; want 3, 4", h.NumNodes(), h.NumEdges())
	}
	var s strings.Builder
	for _, e := range edges {
		s.WriteString(e.Source + e.Target + " ")
	}
	if got, want := s.String(), "ab ab bc cc "; got != want {
		t.Fatalf("exported edges %q, want %q", got, want)
	}
}
