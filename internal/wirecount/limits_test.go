package wirecount

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// TestCheckLimits: each counted field of each GraphService request is
// refused one element past its limit, naming the field and the flag, and
// passes at it; a LoadGraph chunk counts with the stream's earlier chunks;
// 0 is unlimited.
func TestCheckLimits(t *testing.T) {
	const maxNodes, maxEdges = 3, 2
	ids := func(n int) []string { return make([]string, n) }
	nodes := func(n int) []*gcnpb.Node {
		out := make([]*gcnpb.Node, n)
		for i := range out {
			out[i] = &gcnpb.Node{}
		}
		return out
	}
	edges := func(n int) []*gcnpb.Edge {
		out := make([]*gcnpb.Edge, n)
		for i := range out {
			out[i] = &gcnpb.Edge{}
		}
		return out
	}
	earlier := func(n, e int64) func(Field) int64 {
		return func(f Field) int64 {
			if f.Edges {
				return e
			}
			return n
		}
	}
	for _, tc := range []struct {
		name   string
		msg    proto.Message
		before func(Field) int64
		want   string // "" passes
	}{
		{"score at the limit", &gcnpb.ScoreRequest{NodeIds: ids(3)}, nil, ""},
		{"score past it", &gcnpb.ScoreRequest{NodeIds: ids(4)}, nil, "request has 4 node_ids, limit is 3 (--max-nodes)"},
		{"create at the limits", &gcnpb.CreateGraphRequest{Graph: &gcnpb.GraphData{Nodes: nodes(3), Edges: edges(2)}}, nil, ""},
		{"create, nodes past", &gcnpb.CreateGraphRequest{Graph: &gcnpb.GraphData{Nodes: nodes(4)}}, nil, "request has 4 graph.nodes, limit is 3 (--max-nodes)"},
		{"create, edges past", &gcnpb.CreateGraphRequest{Graph: &gcnpb.GraphData{Edges: edges(3)}}, nil, "request has 3 graph.edges, limit is 2 (--max-edges)"},
		{"delta at the limits", &gcnpb.DeltaRequest{UpsertNodes: nodes(3), RemoveNodes: ids(3), AddEdges: edges(2), RemoveEdges: edges(2)}, nil, ""},
		{"delta, upserts past", &gcnpb.DeltaRequest{UpsertNodes: nodes(4)}, nil, "4 upsert_nodes, limit is 3 (--max-nodes)"},
		{"delta, removals past", &gcnpb.DeltaRequest{RemoveNodes: ids(4)}, nil, "4 remove_nodes, limit is 3 (--max-nodes)"},
		{"delta, added edges past", &gcnpb.DeltaRequest{AddEdges: edges(3)}, nil, "3 add_edges, limit is 2 (--max-edges)"},
		{"delta, removed edges past", &gcnpb.DeltaRequest{RemoveEdges: edges(3)}, nil, "3 remove_edges, limit is 2 (--max-edges)"},
		{"first chunk at the limits", &gcnpb.LoadGraphChunk{Nodes: nodes(3), Edges: edges(2)}, earlier(0, 0), ""},
		{"a chunk past them with the earlier", &gcnpb.LoadGraphChunk{Nodes: nodes(1)}, earlier(3, 0),
			"request has 4 nodes in the stream so far, limit is 3 (--max-nodes)"},
		{"a chunk of edges past them with the earlier", &gcnpb.LoadGraphChunk{Edges: edges(1)}, earlier(0, 2),
			"request has 3 edges in the stream so far, limit is 2 (--max-edges)"},
	} {
		b, err := proto.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		md := tc.msg.ProtoReflect().Descriptor()
		c, err := Count(b, md)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err = CheckLimits(md, c, tc.before, maxNodes, maxEdges)
		var e *gcn.Error
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &e) || e.Kind != gcn.KindTooLarge || !strings.Contains(e.Msg, tc.want)):
			t.Errorf("%s: got %v, want TooLarge %q", tc.name, err, tc.want)
		}
		if err := CheckLimits(md, c, tc.before, 0, 0); err != nil {
			t.Errorf("%s without limits: %v", tc.name, err)
		}
	}
}
