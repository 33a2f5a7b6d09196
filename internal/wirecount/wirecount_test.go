package wirecount

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// requests are the messages whose wire bytes the server counts.
var requests = []proto.Message{
	&gcnpb.ScoreRequest{}, &gcnpb.CreateGraphRequest{}, &gcnpb.DeltaRequest{}, &gcnpb.LoadGraphChunk{},
}

// elementsOf is the oracle: the element count of every non-empty repeated
// field of a decoded message, by the paths Count uses, found by reflection.
func elementsOf(m protoreflect.Message, prefix string, out map[string]int64) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			out[path] += int64(l.Len())
			if fd.Kind() == protoreflect.MessageKind {
				for i := range l.Len() {
					elementsOf(l.Get(i).Message(), path+".", out)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			elementsOf(v.Message(), path+".", out)
		}
		return true
	})
}

// nonZero is counts' elements without the fields that hold none.
func nonZero(c Counts) map[string]int64 {
	out := make(map[string]int64)
	for k, v := range c.elements {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// agrees checks Count against proto.Unmarshal on b as msg's type: when
// Unmarshal accepts b, Count accepts it too and counts every repeated
// field's elements exactly. (Count may accept what Unmarshal refuses, e.g.
// invalid UTF-8: the decode refuses it afterwards.)
func agrees(t *testing.T, b []byte, msg proto.Message) (Counts, error) {
	t.Helper()
	md := msg.ProtoReflect().Descriptor()
	c, err := Count(b, md)
	m := msg.ProtoReflect().New().Interface()
	if uerr := proto.Unmarshal(b, m); uerr == nil {
		if err != nil {
			t.Fatalf("%s %x: Count: %v; proto.Unmarshal accepts it", md.Name(), b, err)
		}
		want := make(map[string]int64)
		elementsOf(m.ProtoReflect(), "", want)
		if got := nonZero(c); !maps.Equal(got, want) {
			t.Fatalf("%s %x: Count has elements %v, proto.Unmarshal decoded %v", md.Name(), b, got, want)
		}
	}
	return c, err
}

func nodes(prefix string, n, features int) []*gcnpb.Node {
	out := make([]*gcnpb.Node, n)
	for i := range out {
		out[i] = &gcnpb.Node{Id: fmt.Sprint(prefix, i), Features: make([]float32, features)}
	}
	return out
}

func edges(n int) []*gcnpb.Edge {
	out := make([]*gcnpb.Edge, n)
	for i := range out {
		out[i] = &gcnpb.Edge{SourceId: fmt.Sprint("n", i), TargetId: fmt.Sprint("n", i+1)}
	}
	return out
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCountMessages: the requests as clients marshal them are counted
// exactly, field by field.
func TestCountMessages(t *testing.T) {
	exp := uint64(3)
	for _, tc := range []struct {
		msg  proto.Message
		want map[string]int64
	}{
		{&gcnpb.ScoreRequest{}, map[string]int64{}},
		{&gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"a", "", "c"}, MinRevision: 4},
			map[string]int64{"node_ids": 3}},
		{&gcnpb.CreateGraphRequest{GraphId: "g", Graph: &gcnpb.GraphData{Nodes: nodes("n", 5, 34), Edges: edges(7)}},
			map[string]int64{"graph.nodes": 5, "graph.nodes.features": 5 * 34, "graph.edges": 7}},
		{&gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: nodes("u", 2, 3), RemoveNodes: []string{"x", "y", "z", "w"},
			AddEdges: edges(6), RemoveEdges: edges(1), ExpectedRevision: &exp, IdempotencyKey: "k"},
			map[string]int64{"upsert_nodes": 2, "upsert_nodes.features": 6, "remove_nodes": 4, "add_edges": 6, "remove_edges": 1}},
		{&gcnpb.LoadGraphChunk{GraphId: "g", Nodes: nodes("n", 9, 1), Edges: edges(2)},
			map[string]int64{"nodes": 9, "nodes.features": 9, "edges": 2}},
	} {
		b := marshal(t, tc.msg)
		c, err := agrees(t, b, tc.msg)
		if err != nil {
			t.Fatalf("%T: %v", tc.msg, err)
		}
		if got := nonZero(c); !maps.Equal(got, tc.want) {
			t.Errorf("%T: got elements %v, want %v", tc.msg, got, tc.want)
		}
		if c.Decoded <= 0 && len(b) > 0 {
			t.Errorf("%T: Decoded %d for %d wire bytes, want a positive bound", tc.msg, c.Decoded, len(b))
		}
	}
}

// Wire bytes built by hand.
func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

func lenField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), v)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// float32s is n packed zero floats.
func float32s(n int) []byte { return make([]byte, 4*n) }

// TestCountWire: packed and unpacked scalars, fields sent in another wire
// type than their own, a singular message sent twice, and bytes that are
// not a message (lying lengths, truncated or overlong varints, a packed run
// cut inside an element, field number 0, a stray end-group): counted as
// protobuf-go decodes them, or refused naming the field.
func TestCountWire(t *testing.T) {
	score, node, create := &gcnpb.ScoreRequest{}, &gcnpb.Node{}, &gcnpb.CreateGraphRequest{}
	unpacked := cat(tag(2, protowire.Fixed32Type), make([]byte, 4), tag(2, protowire.Fixed32Type), make([]byte, 4))
	graphOf := func(n int) []byte {
		var g []byte
		for i := range n {
			g = append(g, lenField(1, lenField(1, []byte{'a' + byte(i)}))...)
		}
		return lenField(4, g)
	}
	for _, tc := range []struct {
		name string
		msg  proto.Message
		b    []byte
		path string
		want int64  // elements at path
		err  string // a refusal holding this
	}{
		{"packed floats", node, lenField(2, float32s(5)), "features", 5, ""},
		{"unpacked floats", node, unpacked, "features", 2, ""},
		{"packed then unpacked", node, cat(lenField(2, float32s(3)), unpacked), "features", 5, ""},
		{"empty packed run", node, lenField(2, nil), "features", 0, ""},
		{"packed varints in a float field", node, cat(lenField(2, []byte{1})), "", 0, "not a whole number of 4-byte elements"},
		{"float as a varint: unknown", node, cat(tag(2, protowire.VarintType), []byte{7}), "features", 0, ""},
		{"packed uint64", &gcnpb.ScoreRequest{}, lenField(4, []byte{1, 2}), "", 0, ""},
		{"empty ids", score, bytes.Repeat(lenField(2, nil), 1000), "node_ids", 1000, ""},
		{"id as a varint: unknown", score, cat(tag(2, protowire.VarintType), []byte{0x96, 0x01}, lenField(2, []byte("a"))), "node_ids", 1, ""},
		{"id as fixed64: unknown", score, cat(tag(2, protowire.Fixed64Type), make([]byte, 8)), "node_ids", 0, ""},
		{"id as a group: unknown", score, cat(tag(2, protowire.StartGroupType), lenField(1, []byte("x")), tag(2, protowire.EndGroupType)), "node_ids", 0, ""},
		{"unknown field", score, cat(lenField(99, []byte("abc")), lenField(2, nil)), "node_ids", 1, ""},
		{"graph sent twice: merged", create, cat(graphOf(2), graphOf(3)), "graph.nodes", 5, ""},
		{"graph as a varint: unknown", create, cat(tag(4, protowire.VarintType), []byte{1}), "graph.nodes", 0, ""},
		{"id longer than the message", score, cat(tag(2, protowire.BytesType), protowire.AppendVarint(nil, 100), []byte("abc")), "", 0, "ScoreRequest field 2"},
		{"id length of 2^63", score, cat(tag(2, protowire.BytesType), protowire.AppendVarint(nil, 1<<63)), "", 0, "ScoreRequest field 2"},
		{"truncated tag", score, []byte{0x80}, "", 0, "bad field tag"},
		{"truncated length", score, cat(tag(2, protowire.BytesType), []byte{0xff}), "", 0, "ScoreRequest field 2"},
		{"overlong varint", score, cat(tag(4, protowire.VarintType), bytes.Repeat([]byte{0xff}, 11)), "", 0, "ScoreRequest field 4"},
		{"field number 0", score, []byte{0x02, 0x00}, "", 0, "bad field tag"},
		{"stray end group", score, tag(2, protowire.EndGroupType), "", 0, "ScoreRequest field 2"},
		{"nested lie", create, lenField(4, cat(tag(1, protowire.BytesType), []byte{50})), "", 0, "CreateGraphRequest.graph: GraphData field 1"},
		{"nested packed cut", create, lenField(4, lenField(1, lenField(2, []byte{1, 2, 3}))), "", 0, "Node.features: packed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := agrees(t, tc.b, tc.msg)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Count: %v, want %d elements at %q", err, tc.want, tc.path)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Count: %v, want an error holding %q", err, tc.err)
			case tc.err != "":
				if uerr := proto.Unmarshal(tc.b, tc.msg.ProtoReflect().New().Interface()); uerr == nil {
					t.Errorf("proto.Unmarshal accepts what Count refuses")
				}
			case c.Elements(tc.path) != tc.want:
				t.Errorf("%s: got %d elements, want %d", tc.path, c.Elements(tc.path), tc.want)
			}
		})
	}
}

// TestDecodedBound: what Count bounds is at least what proto.Unmarshal
// allocates (testenv.Allocated: garbage included) for the messages that
// amplify most: empty ids and edges (2 wire bytes each), nodes with a
// feature each, a long id, unknown fields.
func TestDecodedBound(t *testing.T) {
	const n = 100_000
	for _, tc := range []struct {
		name string
		msg  proto.Message
		b    []byte
	}{
		{"empty ids", &gcnpb.ScoreRequest{}, bytes.Repeat(lenField(2, nil), n)},
		{"empty edges", &gcnpb.DeltaRequest{}, bytes.Repeat(lenField(4, nil), n)},
		{"empty nodes", &gcnpb.LoadGraphChunk{}, bytes.Repeat(lenField(4, nil), n)},
		{"nodes of one feature", &gcnpb.CreateGraphRequest{}, lenField(4, bytes.Repeat(lenField(1, lenField(2, float32s(1))), n))},
		{"a long id", &gcnpb.ScoreRequest{}, lenField(2, bytes.Repeat([]byte("x"), 1<<20))},
		{"unknown fields", &gcnpb.ScoreRequest{}, bytes.Repeat(cat(tag(9, protowire.VarintType), []byte{1}), n)},
	} {
		c, err := Count(tc.b, tc.msg.ProtoReflect().Descriptor())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		alloc := testenv.Allocated(func() {
			if err := proto.Unmarshal(tc.b, tc.msg.ProtoReflect().New().Interface()); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%s: %d wire bytes, Unmarshal allocated %d, bound %d", tc.name, len(tc.b), alloc, c.Decoded)
		if c.Decoded < alloc {
			t.Errorf("%s: bound %d bytes, Unmarshal allocated %d", tc.name, c.Decoded, alloc)
		}
	}
}

// TestTooMany: the refusal is TooLarge naming the field and the flag.
func TestTooMany(t *testing.T) {
	err := TooMany("node_ids", 30_000_000, 1_000_000, "--max-nodes")
	var e *gcn.Error
	if !errors.As(err, &e) || e.Kind != gcn.KindTooLarge {
		t.Fatalf("TooMany: %v, want a gcn.Error of KindTooLarge", err)
	}
	if want := "request has 30000000 node_ids, limit is 1000000 (--max-nodes)"; e.Msg != want {
		t.Errorf("got %q, want %q", e.Msg, want)
	}
}

// FuzzCount: on any bytes, for every request type, Count never panics,
// accepts whatever proto.Unmarshal accepts, and then counts each repeated
// field exactly (agrees).
func FuzzCount(f *testing.F) {
	for _, m := range seedRequests() {
		f.Add(marshal(f, m))
	}
	f.Add(cat(tag(2, protowire.Fixed32Type), make([]byte, 4), lenField(2, float32s(2))))
	f.Add(cat(tag(2, protowire.StartGroupType), tag(2, protowire.EndGroupType)))
	f.Add(cat(tag(2, protowire.BytesType), protowire.AppendVarint(nil, 1<<63)))
	f.Add(bytes.Repeat([]byte{0xff}, 11))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range append(requests, &gcnpb.Node{}, &gcnpb.GraphData{}) {
			agrees(t, b, m)
		}
	})
}

// TestCountAllocatesNothingPerElement: counting a million nested elements
// allocates a few KB (paths built once), not per element: counting must
// not cost what decoding would.
func TestCountAllocatesNothingPerElement(t *testing.T) {
	b := lenField(4, bytes.Repeat(lenField(1, lenField(2, float32s(1))), 1_000_000))
	md := (&gcnpb.CreateGraphRequest{}).ProtoReflect().Descriptor()
	var c Counts
	alloc := testenv.Allocated(func() {
		var err error
		if c, err = Count(b, md); err != nil {
			t.Fatal(err)
		}
	})
	if c.Elements("graph.nodes") != 1_000_000 || c.Elements("graph.nodes.features") != 1_000_000 {
		t.Fatalf("counted %d nodes and %d features, want 1000000 each", c.Elements("graph.nodes"), c.Elements("graph.nodes.features"))
	}
	if alloc > 64<<10 {
		t.Errorf("counting 1,000,000 nodes allocated %d bytes, want under 64 KiB", alloc)
	}
}

// seedRequests is one request of each counted type, every counted field
// filled: the fuzzers' seeds.
func seedRequests() []proto.Message {
	exp := uint64(1)
	return []proto.Message{
		&gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"a", "", "b"}, MinRevision: 2},
		&gcnpb.CreateGraphRequest{GraphId: "g", Graph: &gcnpb.GraphData{Nodes: nodes("n", 2, 3), Edges: edges(2)}},
		&gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: nodes("u", 1, 2), RemoveNodes: []string{"x"}, AddEdges: edges(1), RemoveEdges: edges(1), ExpectedRevision: &exp},
		&gcnpb.LoadGraphChunk{GraphId: "g", Nodes: nodes("n", 2, 1), Edges: edges(1)},
	}
}
