package wirecount

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// TestJSONCountLimits: a stored-graph body (as /v1/graphs takes them) with
// as many node ids, nodes and edges as --max-nodes and --max-edges allow
// passes CheckLimits on its CountJSON; one element more is refused
// TooLarge naming the field and the flag, worded as for gRPC, whether the
// body uses JSON or proto names.
func TestJSONCountLimits(t *testing.T) {
	const maxNodes, maxEdges = 5, 3
	exp := uint64(7)
	strs := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("n", i)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		msg  proto.Message
		want string // "" passes; else the refusal
	}{
		{"score at the limit", &gcnpb.ScoreRequest{GraphId: "g", NodeIds: strs(maxNodes), IncludePredictions: true, MinRevision: 3}, ""},
		{"score past it", &gcnpb.ScoreRequest{GraphId: "g", NodeIds: strs(maxNodes + 1)}, "request has 6 node_ids, limit is 5 (--max-nodes)"},
		{"create at the limits", &gcnpb.CreateGraphRequest{GraphId: "g", Graph: &gcnpb.GraphData{Nodes: nodes("n", maxNodes, 1), Edges: edges(maxEdges)}}, ""},
		{"create past them", &gcnpb.CreateGraphRequest{GraphId: "g", Graph: &gcnpb.GraphData{Nodes: nodes("n", maxNodes, 1), Edges: edges(maxEdges + 1)}},
			"request has 4 graph.edges, limit is 3 (--max-edges)"},
		{"delta at the limits", &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: nodes("n", maxNodes, 1), RemoveNodes: strs(maxNodes),
			AddEdges: edges(maxEdges), RemoveEdges: edges(maxEdges), ExpectedRevision: &exp, IdempotencyKey: "k"}, ""},
		{"delta, removals past", &gcnpb.DeltaRequest{GraphId: "g", RemoveNodes: strs(maxNodes + 1)}, "request has 6 remove_nodes, limit is 5 (--max-nodes)"},
		{"delta, removed edges past", &gcnpb.DeltaRequest{GraphId: "g", RemoveEdges: edges(maxEdges + 1)}, "request has 4 remove_edges, limit is 3 (--max-edges)"},
	} {
		for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
			body, err := opts.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			md := tc.msg.ProtoReflect().Descriptor()
			err = CheckLimits(md, CountJSON(body, md), nil, maxNodes, maxEdges)
			var e *gcn.Error
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s (%s): refused: %v", tc.name, body, err)
			case tc.want != "" && (!errors.As(err, &e) || e.Kind != gcn.KindTooLarge || !strings.Contains(e.Msg, tc.want)):
				t.Errorf("%s: got %v, want TooLarge %q", tc.name, err, tc.want)
			}
		}
	}
}
