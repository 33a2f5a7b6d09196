package httpjson

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// TestJSONCountLimits: a stored-graph body with as many node ids, nodes
// and edges as --max-nodes and --max-edges allow, every other field set
// (as strings where protojson allows it), passes the count; one element
// more is refused TooLarge naming the field and the flag, before decoding.
func TestJSONCountLimits(t *testing.T) {
	const maxNodes, maxEdges = 5, 3
	exp := uint64(7)
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("n", i)
		}
		return out
	}
	nodes := func(n int) []*gcnpb.Node {
		out := make([]*gcnpb.Node, n)
		for i := range out {
			out[i] = &gcnpb.Node{Id: fmt.Sprint("n", i), Features: []float32{1}}
		}
		return out
	}
	edges := func(n int) []*gcnpb.Edge {
		out := make([]*gcnpb.Edge, n)
		for i := range out {
			out[i] = &gcnpb.Edge{SourceId: "a", TargetId: "b"}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		msg  proto.Message
		want string // "" passes; else the refusal holds it
	}{
		{"score at the limit", &gcnpb.ScoreRequest{GraphId: "g", NodeIds: ids(maxNodes), IncludePredictions: true, MinRevision: 3}, ""},
		{"score past it", &gcnpb.ScoreRequest{GraphId: "g", NodeIds: ids(maxNodes + scoreOtherStrings + 1)}, "node_ids (--max-nodes)"},
		{"create at the limits", &gcnpb.CreateGraphRequest{GraphId: "g", ModelName: "m", ModelVersion: "1",
			Graph: &gcnpb.GraphData{Nodes: nodes(maxNodes), Edges: edges(maxEdges), ModelName: "m"}}, ""},
		{"create past them", &gcnpb.CreateGraphRequest{GraphId: "g", Graph: &gcnpb.GraphData{Nodes: nodes(maxNodes), Edges: edges(maxEdges + 1)}},
			"graph.edges (--max-edges)"},
		{"delta at the limits", &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: nodes(maxNodes), RemoveNodes: ids(maxNodes),
			AddEdges: edges(maxEdges), RemoveEdges: edges(maxEdges), ExpectedRevision: &exp, IdempotencyKey: "k"}, ""},
		{"delta past them", &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: nodes(maxNodes + 1), AddEdges: edges(maxEdges), RemoveEdges: edges(maxEdges)},
			"upsert_nodes (--max-nodes)"},
	} {
		// JSON or proto field names; min_revision and expected_revision
		// are strings in protojson.
		for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
			body, err := opts.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			err = checkJSONCounts(tc.msg.ProtoReflect().Descriptor().FullName(), httpx.CountJSON(body), maxNodes, maxEdges)
			var e *gcn.Error
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s (%s): refused: %v", tc.name, body, err)
			case tc.want != "" && (!errors.As(err, &e) || e.Kind != gcn.KindTooLarge || !strings.Contains(e.Msg, tc.want)):
				t.Errorf("%s: got %v, want TooLarge naming %q", tc.name, err, tc.want)
			}
		}
	}
	// 0 is unlimited.
	body, _ := protojson.Marshal(&gcnpb.ScoreRequest{NodeIds: ids(100)})
	if err := checkJSONCounts((&gcnpb.ScoreRequest{}).ProtoReflect().Descriptor().FullName(), httpx.CountJSON(body), 0, 0); err != nil {
		t.Errorf("score of 100 ids without limits: %v", err)
	}
}
