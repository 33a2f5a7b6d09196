package wirecount

import (
	"maps"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// agreesJSON checks CountJSON against protojson.Unmarshal on body as msg's
// type: when protojson accepts body, CountJSON counts every repeated
// field's elements exactly.
func agreesJSON(t *testing.T, body []byte, msg proto.Message) Counts {
	t.Helper()
	md := msg.ProtoReflect().Descriptor()
	c := CountJSON(body, md)
	m := msg.ProtoReflect().New().Interface()
	if protojson.Unmarshal(body, m) == nil {
		want := make(map[string]int64)
		elementsOf(m.ProtoReflect(), "", want)
		if got := nonZero(c); !maps.Equal(got, want) {
			t.Fatalf("%s %.300q: CountJSON has elements %v, protojson decoded %v", md.Name(), body, got, want)
		}
	}
	return c
}

// TestCountJSON: requests as protojson writes them (JSON or proto names),
// keys with escapes, nulls, and bodies protojson refuses (cut short, a
// million nested arrays) are counted as protojson reads them, or as far
// as they go.
func TestCountJSON(t *testing.T) {
	exp := uint64(3)
	msgs := []proto.Message{
		&gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"a", "", "c"}, MinRevision: 4, IncludePredictions: true},
		&gcnpb.CreateGraphRequest{GraphId: "g", Graph: &gcnpb.GraphData{Nodes: nodes("n", 5, 3), Edges: edges(7)}},
		&gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: nodes("u", 2, 3), RemoveNodes: []string{"x", "y", "z", "w"},
			AddEdges: edges(6), RemoveEdges: edges(1), ExpectedRevision: &exp, IdempotencyKey: "k"},
		&gcnpb.LoadGraphChunk{GraphId: "g", Nodes: nodes("n", 9, 1), Edges: edges(2)},
	}
	for _, m := range msgs {
		for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}, {Multiline: true}} {
			body, err := opts.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			b := marshal(t, m)
			wire, err := Count(b, m.ProtoReflect().Descriptor())
			if err != nil {
				t.Fatal(err)
			}
			if got, want := nonZero(agreesJSON(t, body, m)), nonZero(wire); !maps.Equal(got, want) {
				t.Errorf("%T: JSON counts %v, wire counts %v", m, got, want)
			}
		}
	}
	score := &gcnpb.ScoreRequest{}
	for _, tc := range []struct {
		name, body string
		want       int64 // node_ids
	}{
		{"escaped key", `{"node\u005fids": ["a", "b"]}`, 2},
		{"escaped ids", `{"nodeIds": ["a\"]", "\\", "\u0041"]}`, 3},
		{"null list", `{"nodeIds": null, "graphId": "g"}`, 0},
		{"empty list", `{"nodeIds": [ ]}`, 0},
		{"numbers as ids", `{"nodeIds": [1, 2.5e3, true]}`, 3},
		{"cut short", `{"nodeIds": ["a", "b", "c`, 2},
		{"cut after a comma", `{"nodeIds": ["a", "b",`, 2},
		{"not an object", `["a", "b"]`, 0},
		{"unknown key first", `{"x": {"nodeIds": ["a"]}, "nodeIds": ["a", "b"]}`, 2},
		{"nested arrays as an id", `{"nodeIds": [[[["a"]]], "b"]}`, 2},
		{"a million nested arrays", `{"graphId": ` + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000) + `, "nodeIds": ["a"]}`, 1},
		{"unbalanced", `{"graphId": ]]], "nodeIds": ["a"]}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := agreesJSON(t, []byte(tc.body), score)
			if got := c.Elements("node_ids"); got != tc.want {
				t.Errorf("got %d node_ids, want %d", got, tc.want)
			}
		})
	}
}

// TestCountJSONAllocatesNothingPerElement: a million ids, or a million
// nodes with keys, are counted in a few KB.
func TestCountJSONAllocatesNothingPerElement(t *testing.T) {
	for _, tc := range []struct {
		msg  proto.Message
		body string
		path string
	}{
		{&gcnpb.ScoreRequest{}, `{"node_ids": [` + strings.Repeat(`"",`, 999_999) + `""]}`, "node_ids"},
		{&gcnpb.DeltaRequest{}, `{"upsertNodes": [` + strings.Repeat(`{"id": "a", "features": [1]},`, 999_999) + `{}]}`, "upsert_nodes"},
	} {
		var c Counts
		body, md := []byte(tc.body), tc.msg.ProtoReflect().Descriptor()
		alloc := testenv.Allocated(func() { c = CountJSON(body, md) })
		if c.Elements(tc.path) != 1_000_000 {
			t.Errorf("%s: counted %d, want 1000000", tc.path, c.Elements(tc.path))
		}
		if alloc > 64<<10 {
			t.Errorf("%s: counting 1,000,000 elements allocated %d bytes, want under 64 KiB", tc.path, alloc)
		}
	}
}

// FuzzCountJSONFields: on any body, for every request type, CountJSON
// never panics and, when protojson accepts the body, counts each repeated
// field exactly (agreesJSON).
func FuzzCountJSONFields(f *testing.F) {
	for _, m := range seedRequests() {
		for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
			b, err := opts.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"node\u005fids": ["a\"", null], "graph": null}`))
	f.Add([]byte(`{"removeNodes": ["a", "b",`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, m := range append(requests, &gcnpb.Node{}, &gcnpb.GraphData{}) {
			agreesJSON(t, body, m)
		}
	})
}
