package graphwire

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

var (
	nan    = float32(math.NaN())
	posInf = float32(math.Inf(1))
	negInf = float32(math.Inf(-1))
)

func TestDecodeErrors(t *testing.T) {
	n := func(id string) wire { return node(id, 1, 2, 3) }
	longID := strings.Repeat("é", 40) // 80 bytes: quoted cut to 64
	tests := []struct {
		name string
		in   wire
		lim  Limits
		kind string // "invalid" or "limit"
		// want is the exact message; wantPrefix, when set instead, its
		// beginning (for protowire's own wording).
		want, wantPrefix string
	}{
		{name: "empty id", in: graphOf([]wire{n("n0"), n("")}, nil),
			kind: "invalid", want: `node 1: empty id`},
		{name: "missing id", in: graphOf([]wire{n("n0"), wire(nil).packed(2, 1, 2, 3)}, nil),
			kind: "invalid", want: `node 1: empty id`},
		{name: "duplicate id", in: graphOf([]wire{n("n0"), n("n1"), n("n2"), n("n1")}, nil),
			kind: "invalid", want: `node 3: duplicate id "n1" (also node 1)`},
		{name: "long duplicate id is cut", in: graphOf([]wire{n(longID), n(longID)}, nil),
			kind: "invalid", want: `node 1: duplicate id "` + strings.Repeat("é", 32) + `"... (also node 0)`},
		{name: "too few features", in: graphOf([]wire{n("n0"), node("n1", 1, 2)}, nil),
			kind: "invalid", want: `node 1 ("n1"): 2 features, model wants 3`},
		{name: "no features", in: graphOf([]wire{wire(nil).str(1, "n0")}, nil),
			kind: "invalid", want: `node 0 ("n0"): 0 features, model wants 3`},
		{name: "too many features", in: graphOf([]wire{node("n0", 1, 2, 3, 4, 5), n("n1")}, nil),
			kind: "invalid", want: `node 0 ("n0"): 5 features, model wants 3`},
		{name: "too many unpacked features", in: graphOf([]wire{wire(nil).str(1, "n0").unpacked(2, 1, 2, 3, 4)}, nil),
			kind: "invalid", want: `node 0 ("n0"): 4 features, model wants 3`},
		{name: "NaN", in: graphOf([]wire{n("n0"), node("x", 1, 2, nan)}, nil),
			kind: "invalid", want: `node 1 ("x"): feature 2 is NaN`},
		{name: "+Inf", in: graphOf([]wire{node("x", posInf, 2, nan)}, nil),
			kind: "invalid", want: `node 0 ("x"): feature 0 is +Inf`},
		{name: "-Inf unpacked", in: graphOf([]wire{wire(nil).str(1, "x").unpacked(2, 1, negInf, 3)}, nil),
			kind: "invalid", want: `node 0 ("x"): feature 1 is -Inf`},
		{name: "feature count before NaN", in: graphOf([]wire{node("x", nan, 1)}, nil),
			kind: "invalid", want: `node 0 ("x"): 2 features, model wants 3`},
		{name: "NaN past the feature count", in: graphOf([]wire{node("x", 1, 2, 3, nan)}, nil),
			kind: "invalid", want: `node 0 ("x"): 4 features, model wants 3`},
		{name: "duplicate before feature count", in: graphOf([]wire{n("n0"), node("n0", 1)}, nil),
			kind: "invalid", want: `node 1: duplicate id "n0" (also node 0)`},
		{name: "unknown target", in: graphOf([]wire{n("n0"), n("n1")}, []wire{edge("n0", "n1"), edge("n1", "n9")}),
			kind: "invalid", want: `edge 1: target "n9" is not a node id`},
		{name: "missing source", in: graphOf([]wire{n("n0")}, []wire{wire(nil).str(2, "n0")}),
			kind: "invalid", want: `edge 0: source "" is not a node id`},
		{name: "both endpoints unknown", in: graphOf([]wire{n("n0")}, []wire{edge("a", "b")}),
			kind: "invalid", want: `edge 0: source "a" is not a node id`},
		{name: "edge with no nodes", in: graphOf(nil, []wire{edge("a", "b")}),
			kind: "invalid", want: `edge 0: source "a" is not a node id`},
		{name: "node errors before edge errors", in: wire(nil).msg(2, edge("n0", "n9")).msg(1, n("n0")).msg(1, n("")),
			kind: "invalid", want: `node 1: empty id`},
		{name: "id not UTF-8", in: graphOf([]wire{n("n0"), n("n\xff")}, nil),
			kind: "invalid", want: `node 1: id is not valid UTF-8`},
		{name: "replaced id not UTF-8", in: graphOf([]wire{wire(nil).str(1, "\xff").str(1, "n0").packed(2, 1, 2, 3)}, nil),
			kind: "invalid", want: `node 0: id is not valid UTF-8`},
		{name: "source not UTF-8", in: graphOf([]wire{n("n0")}, []wire{edge("\xc3", "n0")}),
			kind: "invalid", want: `edge 0: source id is not valid UTF-8`},
		{name: "target not UTF-8", in: graphOf([]wire{n("n0")}, []wire{edge("n0", "n0"), edge("n0", "\xed\xa0\x80")}),
			kind: "invalid", want: `edge 1: target id is not valid UTF-8`},

		// Malformed wire bytes.
		{name: "truncated node", in: graphOf([]wire{n("n0")}, nil)[:19],
			kind: "invalid", want: `malformed GraphData: field 1: length 18 runs past the end of its message at byte 0`},
		{name: "tag without value", in: wire(nil).raw(0x0a),
			kind: "invalid", want: `malformed GraphData: unexpected EOF at byte 1`},
		{name: "varint overflow", in: wire(nil).raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
			kind: "invalid", want: `malformed GraphData: variable length integer overflow at byte 0`},
		{name: "truncated varint", in: wire(nil).raw(0x18, 0x80),
			kind: "invalid", want: `malformed GraphData: unexpected EOF at byte 1`},
		{name: "field number 0", in: wire(nil).raw(0x02, 0x00),
			kind: "invalid", want: `malformed GraphData: invalid field number at byte 0`},
		{name: "field number too big", in: wire(nil).raw(protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3)...).raw(0),
			kind: "invalid", want: `malformed GraphData: invalid field number at byte 0`},
		{name: "end group outside group", in: wire(nil).tag(1, protowire.EndGroupType),
			kind: "invalid", want: `malformed GraphData: end-group marker for field 1 outside any group at byte 0`},
		{name: "reserved wire type", in: wire(nil).raw(0x0e, 0),
			kind: "invalid", want: `malformed GraphData: cannot parse reserved wire type at byte 1`},
		{name: "unterminated group", in: wire(nil).tag(5, protowire.StartGroupType).varint(1, 1),
			kind: "invalid", want: `malformed GraphData: unexpected EOF at byte 1`},
		{name: "mismatched end group", in: wire(nil).tag(5, protowire.StartGroupType).tag(6, protowire.EndGroupType),
			kind: "invalid", want: `malformed GraphData: mismatching end group marker at byte 1`},
		{name: "groups nested too deep", in: deepGroup(protowire.DefaultRecursionLimit + 2),
			kind: "invalid", wantPrefix: `malformed GraphData: `},
		{name: "packed features not whole floats", in: wire(nil).msg(1, wire(nil).str(1, "n0").tag(2, protowire.BytesType).raw(5, 1, 2, 3, 4, 5)),
			kind: "invalid", want: `malformed GraphData: node 0: packed features length 5 is not a multiple of 4 at byte 6`},
		{name: "truncated unpacked feature", in: wire(nil).msg(1, wire(nil).str(1, "n0").tag(2, protowire.Fixed32Type).raw(1, 2)),
			kind: "invalid", want: `malformed GraphData: node 0: unexpected EOF at byte 7`},
		{name: "malformed edge", in: graphOf([]wire{n("n0")}, []wire{wire(nil).raw(0x0a, 0x05, 'a')}),
			kind: "invalid", want: `malformed GraphData: edge 0: field 1: length 5 runs past the end of its message at byte 22`},
		{name: "node error before later malformed node", in: graphOf([]wire{n(""), wire(nil).raw(0x0a, 0x05, 'a')}, nil),
			kind: "invalid", want: `node 0: empty id`},

		// Limits.
		{name: "too many nodes", in: graphOf([]wire{n("n0"), n("n1"), n("n2")}, nil), lim: Limits{MaxNodes: 2},
			kind: "limit", want: `request has 3 nodes, limit is 2 (--max-nodes)`},
		{name: "too many edges", in: graphOf([]wire{n("n0")}, []wire{edge("n0", "n0"), edge("n0", "n0")}), lim: Limits{MaxNodes: 1, MaxEdges: 1},
			kind: "limit", want: `request has 2 edges, limit is 1 (--max-edges)`},
		{name: "nodes limit before edges limit", in: graphOf([]wire{n("n0"), n("n1")}, []wire{edge("n0", "n1"), edge("n0", "n1")}), lim: Limits{MaxNodes: 1, MaxEdges: 1},
			kind: "limit", want: `request has 2 nodes, limit is 1 (--max-nodes)`},
		{name: "limit before node errors", in: graphOf([]wire{n(""), n("")}, nil), lim: Limits{MaxNodes: 1},
			kind: "limit", want: `request has 2 nodes, limit is 1 (--max-nodes)`},
		{name: "malformed before limit", in: graphOf([]wire{n("n0"), n("\xff")}, nil), lim: Limits{MaxNodes: 1},
			kind: "invalid", want: `node 1: id is not valid UTF-8`},
		{name: "malformed edge before edge limit", in: graphOf([]wire{n("n0")}, []wire{edge("n0", "n0"), wire(nil).raw(0x0a, 0x05, 'a')}), lim: Limits{MaxEdges: 1},
			kind: "invalid", want: `malformed GraphData: edge 1: field 1: length 5 runs past the end of its message at byte 32`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkAgainstReference(t, tt.in, 3, tt.lim)
			if got := errKind(err); got != tt.kind {
				t.Fatalf("got error %v (kind %s), want kind %s", err, got, tt.kind)
			}
			if tt.wantPrefix != "" {
				if !strings.HasPrefix(err.Error(), tt.wantPrefix) {
					t.Errorf("got %q, want prefix %q", err, tt.wantPrefix)
				}
				return
			}
			if err.Error() != tt.want {
				t.Errorf("got %q, want %q", err, tt.want)
			}
		})
	}
}

// deepGroup is an unknown field holding depth nested groups.
func deepGroup(depth int) wire {
	var w wire
	for range depth {
		w = w.tag(5, protowire.StartGroupType)
	}
	for range depth {
		w = w.tag(5, protowire.EndGroupType)
	}
	return w
}

func TestDecodeAccepts(t *testing.T) {
	n := func(id string, f0 float32) wire { return node(id, f0, f0+0.5, f0+0.25) }
	threeNodes := &Graph{
		IDs:       []string{"n0", "n1", "n2"},
		Features:  []float32{0, 0.5, 0.25, 1, 1.5, 1.25, 2, 2.5, 2.25},
		EdgeIndex: []int64{0, 2, 1, 0},
	}
	tests := []struct {
		name       string
		in         wire
		featureDim int
		want       *Graph
	}{
		{name: "empty", in: nil, want: &Graph{}},
		{name: "only include_predictions", in: wire(nil).varint(3, 1), want: &Graph{IncludePredictions: true}},
		{name: "nodes then edges",
			in:   graphOf([]wire{n("n0", 0), n("n1", 1), n("n2", 2)}, []wire{edge("n0", "n1"), edge("n2", "n0")}),
			want: threeNodes},
		{name: "edges before nodes",
			in:   graphOf(nil, []wire{edge("n0", "n1"), edge("n2", "n0")}).msg(1, n("n0", 0)).msg(1, n("n1", 1)).msg(1, n("n2", 2)),
			want: threeNodes},
		{name: "interleaved",
			in:   wire(nil).msg(2, edge("n0", "n1")).msg(1, n("n0", 0)).msg(2, edge("n2", "n0")).msg(1, n("n1", 1)).msg(1, n("n2", 2)),
			want: threeNodes},
		{name: "features before id",
			in:   wire(nil).msg(1, wire(nil).packed(2, 1, 2, 3).str(1, "a")),
			want: &Graph{IDs: []string{"a"}, Features: []float32{1, 2, 3}, EdgeIndex: []int64{}}},
		{name: "unpacked features",
			in:   wire(nil).msg(1, wire(nil).str(1, "a").unpacked(2, 1, 2, 3)),
			want: &Graph{IDs: []string{"a"}, Features: []float32{1, 2, 3}}},
		{name: "mixed packed chunks and unpacked",
			in:   wire(nil).msg(1, wire(nil).packed(2, 1).packed(2).unpacked(2, 2).str(1, "a").packed(2, 3)),
			want: &Graph{IDs: []string{"a"}, Features: []float32{1, 2, 3}}},
		{name: "unknown fields at every level",
			in: wire(nil).varint(9, 7).fixed64(10, 1).group(11, wire(nil).str(1, "x").group(2, wire(nil).varint(3, 1))).
				str(12, "junk").fixed32(protowire.MaxValidNumber, 5).
				msg(1, wire(nil).varint(7, 1).str(1, "a").group(8, wire(nil).fixed32(1, 2)).packed(2, 1, 2, 3).str(99, "z")).
				msg(2, wire(nil).fixed32(5, 1).str(1, "a").str(9, "q").str(2, "a").group(3, nil)),
			want: &Graph{IDs: []string{"a"}, Features: []float32{1, 2, 3}, EdgeIndex: []int64{0, 0}}},
		{name: "known fields with other wire types are unknown",
			in: wire(nil).varint(1, 5).fixed32(2, 5).str(3, "yes").group(1, nil).
				msg(1, wire(nil).varint(1, 4).str(1, "a").varint(2, 9).fixed64(2, 9).group(2, nil).packed(2, 1, 2, 3)).
				msg(2, wire(nil).fixed32(1, 1).str(1, "a").varint(2, 1).str(2, "a")),
			want: &Graph{IDs: []string{"a"}, Features: []float32{1, 2, 3}, EdgeIndex: []int64{0, 0}}},
		{name: "last id wins",
			in:   graphOf([]wire{wire(nil).str(1, "first").packed(2, 1, 2, 3).str(1, "a"), wire(nil).str(1, "").str(1, "b").packed(2, 4, 5, 6)}, []wire{wire(nil).str(1, "x").str(2, "a").str(1, "b")}),
			want: &Graph{IDs: []string{"a", "b"}, Features: []float32{1, 2, 3, 4, 5, 6}, EdgeIndex: []int64{1, 0}}},
		{name: "self loops and repeated edges",
			in:   graphOf([]wire{n("n0", 0), n("n1", 1)}, []wire{edge("n0", "n0"), edge("n0", "n1"), edge("n0", "n1")}),
			want: &Graph{IDs: []string{"n0", "n1"}, Features: []float32{0, 0.5, 0.25, 1, 1.5, 1.25}, EdgeIndex: []int64{0, 0, 0, 0, 1, 1}}},
		{name: "no features for a featureless model",
			in: graphOf([]wire{wire(nil).str(1, "a"), wire(nil).str(1, "b").packed(2)}, []wire{edge("b", "a")}), featureDim: 0,
			want: &Graph{IDs: []string{"a", "b"}, EdgeIndex: []int64{1, 0}}},
		{name: "negative zero and subnormals are features",
			in:   graphOf([]wire{node("a", float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32)}, nil),
			want: &Graph{IDs: []string{"a"}, Features: []float32{float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32}}},
		{name: "non-ASCII ids", in: graphOf([]wire{n("ノード", 0)}, []wire{edge("ノード", "ノード")}),
			want: &Graph{IDs: []string{"ノード"}, Features: []float32{0, 0.5, 0.25}, EdgeIndex: []int64{0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.featureDim == 0 && tt.want.Features != nil {
				tt.featureDim = 3
			}
			got, err := checkAgainstReference(t, tt.in, tt.featureDim, Limits{})
			if err != nil {
				t.Fatalf("got error %q, want none", err)
			}
			if d := diffGraph(got, tt.want); d != "" {
				t.Error(d)
			}
			if got.NumNodes() != len(tt.want.IDs) || got.NumEdges() != len(tt.want.EdgeIndex)/2 {
				t.Errorf("got %d nodes and %d edges, want %d and %d", got.NumNodes(), got.NumEdges(), len(tt.want.IDs), len(tt.want.EdgeIndex)/2)
			}
		})
	}
}

func TestDecodeIncludePredictions(t *testing.T) {
	tests := []struct {
		name string
		in   wire
		want bool
	}{
		{name: "absent", in: nil, want: false},
		{name: "1", in: wire(nil).varint(3, 1), want: true},
		{name: "0", in: wire(nil).varint(3, 0), want: false},
		{name: "2 is true", in: wire(nil).varint(3, 2), want: true},
		{name: "128 is true", in: wire(nil).varint(3, 128), want: true},
		{name: "1<<63 is true", in: wire(nil).varint(3, 1<<63), want: true},
		{name: "non-minimal varint 1", in: wire(nil).tag(3, protowire.VarintType).raw(0x81, 0x80, 0x00), want: true},
		{name: "last wins: 1 then 0", in: wire(nil).varint(3, 1).varint(3, 0), want: false},
		{name: "last wins: 0 then 1", in: wire(nil).varint(3, 0).varint(3, 1), want: true},
		{name: "bytes is an unknown field", in: wire(nil).varint(3, 1).str(3, "\x00"), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkAgainstReference(t, tt.in, 3, Limits{})
			if err != nil {
				t.Fatalf("got error %q, want none", err)
			}
			if got.IncludePredictions != tt.want {
				t.Errorf("got IncludePredictions %v, want %v", got.IncludePredictions, tt.want)
			}
		})
	}
}

func TestDecodeLimitsAllowUpToTheLimit(t *testing.T) {
	in := graphOf([]wire{node("a", 1, 2, 3), node("b", 1, 2, 3)}, []wire{edge("a", "b")})
	for _, lim := range []Limits{{}, {MaxNodes: 2, MaxEdges: 1}, {MaxNodes: -1, MaxEdges: -1}} {
		if _, err := checkAgainstReference(t, in, 3, lim); err != nil {
			t.Errorf("limits %+v: got error %q, want none", lim, err)
		}
	}
}

func TestDecodeNegativeFeatureDim(t *testing.T) {
	for name, decode := range map[string]func() error{
		"Decode":      func() error { _, err := Decode(nil, -1, Limits{}); return err },
		"FromMessage": func() error { _, err := FromMessage(nil, -1, Limits{}); return err },
	} {
		if err := decode(); errKind(err) != "other" {
			t.Errorf("%s: got error %v (kind %s), want a plain error", name, err, errKind(err))
		}
	}
}

// TestDecodeShortNodesDoNotAllocateFeatures guards against a small request
// of featureless nodes making Decode allocate nodes*featureDim floats before
// it finds the first node is short.
func TestDecodeShortNodesDoNotAllocateFeatures(t *testing.T) {
	const featureDim = 1 << 16
	nodes := make([]wire, 1000) // 256 MB of features, were they allocated
	for i := range nodes {
		nodes[i] = node("n"+string(rune('a'+i%26))+strings.Repeat("x", i/26), 1)
	}
	in := graphOf(nodes, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Decode(in, featureDim, Limits{})
	runtime.ReadMemStats(&after)
	if want := `node 0 ("na"): 1 features, model wants 65536`; err == nil || err.Error() != want {
		t.Fatalf("got error %v, want %q", err, want)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("Decode allocated %d bytes, want under 4 MiB", got)
	}
}

// TestDecodeAliasesInput checks the documented contract: ids point into the
// request buffer, not at copies.
func TestDecodeAliasesInput(t *testing.T) {
	in := graphOf([]wire{node("abc", 1, 2, 3)}, nil)
	g, err := Decode(in, 3, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(in), "abc")
	in[i] = 'X'
	if got, want := g.IDs[0], "Xbc"; got != want {
		t.Errorf("after changing the buffer got id %q, want %q (ids alias the input)", got, want)
	}
}

func TestDecodeEqualsFromMessage(t *testing.T) {
	msgs := map[string]*gcnpb.GraphData{
		"empty":        {},
		"karate-like":  SyntheticGraph(34, 78, 3, 1),
		"bag of words": SyntheticBagOfWordsGraph(50, 100, 3, 0.3, 2),
		"predictions":  {Nodes: SyntheticGraph(5, 0, 3, 3).Nodes, IncludePredictions: true},
		"duplicate id": {Nodes: []*gcnpb.Node{{Id: "a", Features: []float32{1, 2, 3}}, {Id: "a", Features: []float32{1, 2, 3}}}},
		"bad edge": {
			Nodes: []*gcnpb.Node{{Id: "a", Features: []float32{1, 2, 3}}},
			Edges: []*gcnpb.Edge{{SourceId: "a", TargetId: "a"}, {SourceId: "a", TargetId: "b"}},
		},
		"NaN":       {Nodes: []*gcnpb.Node{{Id: "a", Features: []float32{1, nan, 3}}}},
		"wide rows": SyntheticGraph(10, 10, 40, 4),
		// Edges resolve a chunk (lookupChunk) at a time: cross chunk
		// boundaries, with and without a bad endpoint late in a chunk.
		"many edges": SyntheticGraph(300, 3*lookupChunk+7, 3, 6),
		// Enough edges to resolve chunks on a second goroutine.
		"pipelined edges": SyntheticGraph(2000, parallelEdges+3*lookupChunk+1, 3, 8),
		"bad edge late in a pipelined pass": func() *gcnpb.GraphData {
			m := SyntheticGraph(2000, parallelEdges+3*lookupChunk+1, 3, 9)
			m.Edges[parallelEdges+lookupChunk+5].SourceId = "nowhere"
			m.Edges[parallelEdges+2*lookupChunk+5].TargetId = "nowhere either"
			return m
		}(),
		"bad edge in the third chunk": func() *gcnpb.GraphData {
			m := SyntheticGraph(300, 3*lookupChunk+7, 3, 7)
			m.Edges[2*lookupChunk+lookupChunk*3/5].TargetId = "nowhere"
			m.Edges[2*lookupChunk+lookupChunk*3/5+1].SourceId = "nowhere either"
			return m
		}(),
		"duplicate far apart, then a bad count": func() *gcnpb.GraphData {
			m := SyntheticGraph(200, 400, 3, 11)
			m.Nodes[170].Id = m.Nodes[30].Id
			m.Nodes[190].Features = m.Nodes[190].Features[:2]
			return m
		}(),
		"long ids sharing a prefix": func() *gcnpb.GraphData {
			m := SyntheticGraph(200, 400, 3, 12)
			ids := map[string]string{}
			for _, n := range m.Nodes {
				ids[n.Id] = "a-long-shared-prefix/" + n.Id
				n.Id = ids[n.Id]
			}
			for _, e := range m.Edges {
				e.SourceId, e.TargetId = ids[e.SourceId], ids[e.TargetId]
			}
			m.Edges[333].TargetId = "a-long-shared-prefix/"
			return m
		}(),
		"NaN in a wide row": func() *gcnpb.GraphData {
			m := SyntheticGraph(10, 10, 40, 5)
			m.Nodes[6].Features[37] = nan
			m.Nodes[8].Features[3] = negInf
			return m
		}(),
	}
	for name, m := range msgs {
		for _, deterministic := range []bool{false, true} {
			b, err := proto.MarshalOptions{Deterministic: deterministic}.Marshal(m)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, lim := range []Limits{{}, {MaxNodes: 10, MaxEdges: 50}} {
				f := 3
				if len(m.GetNodes()) > 0 {
					f = len(m.Nodes[0].Features)
				}
				checkAgainstReference(t, b, f, lim) // also in parts
				got, gotErr := Decode(b, f, lim)
				want, wantErr := FromMessage(m, f, lim)
				switch {
				case errKind(gotErr) != errKind(wantErr):
					t.Errorf("%s: Decode error %v, FromMessage error %v: want the same kind", name, gotErr, wantErr)
				case gotErr != nil && gotErr.Error() != wantErr.Error():
					t.Errorf("%s: got %q, want %q", name, gotErr, wantErr)
				case gotErr == nil:
					if d := diffGraph(got, want); d != "" {
						t.Errorf("%s: %s", name, d)
					}
				}
			}
		}
	}
}

// TestFromMessageInvalidUTF8 covers messages built in Go, which can hold
// ids that are not UTF-8 (proto.Marshal would refuse them).
func TestFromMessageInvalidUTF8(t *testing.T) {
	f := []float32{1, 2, 3}
	tests := []struct {
		name string
		m    *gcnpb.GraphData
		want string
	}{
		{name: "node", m: &gcnpb.GraphData{Nodes: []*gcnpb.Node{{Id: "a", Features: f}, {Id: "\xff", Features: f}}},
			want: `node 1: id is not valid UTF-8`},
		{name: "source", m: &gcnpb.GraphData{Nodes: []*gcnpb.Node{{Id: "a", Features: f}}, Edges: []*gcnpb.Edge{{SourceId: "\xff", TargetId: "b"}}},
			want: `edge 0: source id is not valid UTF-8`},
		{name: "target after unknown source", m: &gcnpb.GraphData{Nodes: []*gcnpb.Node{{Id: "a", Features: f}}, Edges: []*gcnpb.Edge{{SourceId: "b", TargetId: "\xff"}}},
			want: `edge 0: target id is not valid UTF-8`},
		{name: "target", m: &gcnpb.GraphData{Nodes: []*gcnpb.Node{{Id: "a", Features: f}}, Edges: []*gcnpb.Edge{{SourceId: "a", TargetId: "\xff"}}},
			want: `edge 0: target id is not valid UTF-8`},
		{name: "nil node", m: &gcnpb.GraphData{Nodes: []*gcnpb.Node{nil}},
			want: `node 0: empty id`},
		// Edges resolve a chunk at a time, on a second goroutine on big
		// graphs: the first bad edge still wins, whatever is wrong with it.
		{name: "pipelined, bad UTF-8 first", m: badEdges(parallelEdges+lookupChunk+3, func(e []*gcnpb.Edge) {
			e[parallelEdges+7].TargetId = "\xff"
			e[parallelEdges+8].SourceId = "nowhere"
		}), want: fmt.Sprintf(`edge %d: target id is not valid UTF-8`, parallelEdges+7)},
		{name: "pipelined, unknown id first", m: badEdges(parallelEdges+lookupChunk+3, func(e []*gcnpb.Edge) {
			e[parallelEdges+lookupChunk+1].SourceId = "nowhere"
			e[parallelEdges+lookupChunk+2].SourceId = "\xff"
		}), want: fmt.Sprintf(`edge %d: source "nowhere" is not a node id`, parallelEdges+lookupChunk+1)},
		{name: "inline, last chunk", m: badEdges(2*lookupChunk+3, func(e []*gcnpb.Edge) {
			e[2*lookupChunk+2].SourceId = "\xfe"
		}), want: fmt.Sprintf(`edge %d: source id is not valid UTF-8`, 2*lookupChunk+2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromMessage(tt.m, 3, Limits{})
			if errKind(err) != "invalid" || err.Error() != tt.want {
				t.Errorf("got %v, want InvalidError %q", err, tt.want)
			}
		})
	}
}

// badEdges is a graph of 3-feature nodes and the given number of valid
// edges, then broken by breakEdges.
func badEdges(edges int, breakEdges func([]*gcnpb.Edge)) *gcnpb.GraphData {
	m := SyntheticGraph(100, edges, 3, 10)
	breakEdges(m.Edges)
	return m
}

// TestDecodeAllocations checks that Decode allocates nothing per node or
// edge: it makes a fixed number of allocations whatever the graph's size.
func TestDecodeAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("builds large payloads; -race changes allocation counts")
	}
	for _, size := range []struct{ nodes, edges int }{{10, 20}, {1000, 5000}, {20000, 100000}} {
		b, err := proto.Marshal(SyntheticGraph(size.nodes, size.edges, 4, 1))
		if err != nil {
			t.Fatal(err)
		}
		got := testing.AllocsPerRun(5, func() {
			if _, err := Decode(b, 4, Limits{}); err != nil {
				t.Fatal(err)
			}
		})
		// The Graph, IDs, Features and EdgeIndex; the id index, its slots,
		// its arena (short ids: never regrown) and its ends; the edge pass's
		// chunk list, and on big graphs its two channels and goroutine
		// (chunks themselves come from a pool).
		const fixed = 12
		if got > fixed {
			t.Errorf("%d nodes, %d edges: got %v allocations, want at most %d", size.nodes, size.edges, got, fixed)
		}
	}
}

// TestDecodePortablePath runs the feature decoding that big-endian machines
// use, on this machine.
func TestDecodePortablePath(t *testing.T) {
	saved := nativeLittleEndian
	nativeLittleEndian = false
	t.Cleanup(func() { nativeLittleEndian = saved })
	m := SyntheticGraph(20, 40, 5, 3)
	m.Nodes[7].Features[2] = posInf
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkAgainstReference(t, b, 5, Limits{}); err == nil || err.Error() != `node 7 ("n7"): feature 2 is +Inf` {
		t.Errorf("got error %v, want the +Inf at node 7", err)
	}
	m.Nodes[7].Features[2] = 0.5
	if b, err = proto.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if _, err := checkAgainstReference(t, b, 5, Limits{}); err != nil {
		t.Errorf("got error %q, want none", err)
	}
	in := wire(nil).msg(1, wire(nil).str(1, "a").unpacked(2, 1, 2).packed(2, 3, 4))
	g, err := checkAgainstReference(t, in, 3, Limits{})
	if err == nil || err.Error() != `node 0 ("a"): 4 features, model wants 3` {
		t.Errorf("got graph %v, error %v, want the feature count error", g, err)
	}
}
