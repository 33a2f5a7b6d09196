package grpcapi

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/wirecount"
)

// countedField is a repeated field of a GraphService request that a client
// fills, by path (wirecount.Counts.Elements), and whether it counts
// against --max-edges (else --max-nodes).
type countedField struct {
	path  string
	edges bool
}

// countedFields lists, per request message, the repeated fields whose
// elements are counted from the wire and refused past the per-request
// limits before the message is decoded. Every one is bounded by a limit
// anyway once applied: a delta upserts at most --max-nodes distinct nodes
// and removes only nodes and edges the graph has; ScoreNodes is refused
// past --max-nodes ids.
var countedFields = map[protoreflect.FullName][]countedField{
	fullName(&gcnpb.ScoreRequest{}):       {{path: "node_ids"}},
	fullName(&gcnpb.CreateGraphRequest{}): {{path: "graph.nodes"}, {path: "graph.edges", edges: true}},
	fullName(&gcnpb.DeltaRequest{}): {{path: "upsert_nodes"}, {path: "remove_nodes"},
		{path: "add_edges", edges: true}, {path: "remove_edges", edges: true}},
	fullName(&gcnpb.LoadGraphChunk{}): {{path: "nodes"}, {path: "edges", edges: true}},
}

func fullName(m interface {
	ProtoReflect() protoreflect.Message
}) protoreflect.FullName {
	return m.ProtoReflect().Descriptor().FullName()
}

// checkCounts refuses a request of type md whose counted fields hold more
// elements than --max-nodes or --max-edges (0: unlimited), naming the
// field and the flag. before adds elements already received to each
// field's count (a LoadGraph stream's earlier chunks); nil: none.
func (s *graphService) checkCounts(md protoreflect.MessageDescriptor, c wirecount.Counts, before func(countedField) int64) error {
	cfg := s.svc.Config()
	return checkCounts(md, c, before, cfg.MaxNodes, cfg.MaxEdges)
}

func checkCounts(md protoreflect.MessageDescriptor, c wirecount.Counts, before func(countedField) int64, maxNodes, maxEdges int) error {
	for _, f := range countedFields[md.FullName()] {
		limit, flag := maxNodes, "--max-nodes"
		if f.edges {
			limit, flag = maxEdges, "--max-edges"
		}
		n := c.Elements(f.path)
		field := f.path
		if before != nil {
			n += before(f)
			field += " in the stream so far"
		}
		if limit > 0 && n > int64(limit) {
			return wirecount.TooMany(field, n, limit, flag)
		}
	}
	return nil
}
