package wirecount

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// Field is a repeated field of a stored-graph request that a client fills,
// by path (Counts.Elements), and whether it counts against --max-edges
// (else --max-nodes).
type Field struct {
	Path  string
	Edges bool
}

// counted lists, per request message, the repeated fields whose elements
// are counted before the message is decoded and refused past the
// per-request limits. Each is bounded by a limit anyway once applied: a
// delta upserts at most --max-nodes distinct nodes and removes only nodes
// and edges the graph has; ScoreNodes is refused past --max-nodes ids.
var counted = map[protoreflect.FullName][]Field{
	fullName(&gcnpb.ScoreRequest{}):       {{Path: "node_ids"}},
	fullName(&gcnpb.CreateGraphRequest{}): {{Path: "graph.nodes"}, {Path: "graph.edges", Edges: true}},
	fullName(&gcnpb.DeltaRequest{}): {{Path: "upsert_nodes"}, {Path: "remove_nodes"},
		{Path: "add_edges", Edges: true}, {Path: "remove_edges", Edges: true}},
	fullName(&gcnpb.LoadGraphChunk{}): {{Path: "nodes"}, {Path: "edges", Edges: true}},
}

func fullName(m interface {
	ProtoReflect() protoreflect.Message
}) protoreflect.FullName {
	return m.ProtoReflect().Descriptor().FullName()
}

// CheckLimits refuses a request of type md whose counted fields hold more
// elements than maxNodes (--max-nodes) or maxEdges (--max-edges; 0:
// unlimited): TooLarge naming the field and the flag. before, when set,
// adds the elements a stream's earlier messages carried to each field's
// count (a LoadGraph stream's chunks).
func CheckLimits(md protoreflect.MessageDescriptor, c Counts, before func(Field) int64, maxNodes, maxEdges int) error {
	for _, f := range counted[md.FullName()] {
		limit, flag := maxNodes, "--max-nodes"
		if f.Edges {
			limit, flag = maxEdges, "--max-edges"
		}
		n := c.Elements(f.Path)
		field := f.Path
		if before != nil {
			n += before(f)
			field += " in the stream so far"
		}
		if limit > 0 && n > int64(limit) {
			return TooMany(field, n, limit, flag)
		}
	}
	return nil
}

// TooMany is the refusal of a request whose field holds n elements, more
// than limit, the value of flag ("--max-nodes"): TooLarge
// (RESOURCE_EXHAUSTED, HTTP 413) naming the field and the flag, in the
// wording of the limits checked after decoding.
func TooMany(field string, n int64, limit int, flag string) error {
	return gcn.Errorf(gcn.KindTooLarge, "request has %d %s, limit is %d (%s)", n, field, limit, flag)
}
