package serving

import (
	"context"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphs"
)

// The wire forms of stored-graph calls, shared by the gRPC and HTTP/JSON
// transports (both speak gcn.proto's messages).

// DeltaFromProto converts a DeltaRequest. Node features alias the message.
func DeltaFromProto(m *gcnpb.DeltaRequest) *graphs.Delta {
	d := &graphs.Delta{
		UpsertNodes:    nodesFromProto(m.GetUpsertNodes()),
		RemoveNodes:    m.GetRemoveNodes(),
		AddEdges:       edgesFromProto(m.GetAddEdges()),
		RemoveEdges:    edgesFromProto(m.GetRemoveEdges()),
		IdempotencyKey: m.GetIdempotencyKey(),
	}
	if m.ExpectedRevision != nil {
		d.HasExpected, d.ExpectedRevision = true, m.GetExpectedRevision()
	}
	return d
}

// AppendGraphData adds a GraphData's (or a LoadGraph chunk's) nodes and
// edges to d as upserts and added edges.
func AppendGraphData(d *graphs.Delta, nodes []*gcnpb.Node, edges []*gcnpb.Edge) {
	d.UpsertNodes = append(d.UpsertNodes, nodesFromProto(nodes)...)
	d.AddEdges = append(d.AddEdges, edgesFromProto(edges)...)
}

func nodesFromProto(ns []*gcnpb.Node) []graphs.Node {
	if len(ns) == 0 {
		return nil
	}
	out := make([]graphs.Node, len(ns))
	for i, n := range ns {
		out[i] = graphs.Node{ID: n.GetId(), Features: n.GetFeatures()}
	}
	return out
}

func edgesFromProto(es []*gcnpb.Edge) []graphs.Edge {
	if len(es) == 0 {
		return nil
	}
	out := make([]graphs.Edge, len(es))
	for j, e := range es {
		out[j] = graphs.Edge{Source: e.GetSourceId(), Target: e.GetTargetId()}
	}
	return out
}

// GraphInfoProto converts a GraphInfo.
func GraphInfoProto(i GraphInfo) *gcnpb.GraphInfo {
	return &gcnpb.GraphInfo{GraphId: i.ID, Nodes: int64(i.Nodes), Edges: i.Edges, Bytes: i.Bytes,
		Revision: i.Revision, ModelName: i.Model, ModelVersion: i.Version, Mode: i.Mode}
}

// ScoreProto converts a ScoreResult, with predictions when asked.
func ScoreProto(r ScoreResult, includePredictions bool) *gcnpb.ScoreResponse {
	out := &gcnpb.ScoreResponse{NodeScores: make(map[string]float32, len(r.IDs)),
		Revision: r.Revision, ModelName: r.Model, ModelVersion: r.Version}
	for i, id := range r.IDs {
		out.NodeScores[id] = r.Scores[i]
	}
	if includePredictions {
		c := r.NumClasses
		out.Predictions = make([]*gcnpb.NodePrediction, len(r.IDs))
		for i, id := range r.IDs {
			k := r.ClassIndex[i]
			out.Predictions[i] = &gcnpb.NodePrediction{Id: id, ClassIndex: k, ClassName: r.ClassNames[k],
				Probabilities: r.Probabilities[i*c : (i+1)*c]}
		}
	}
	return out
}

// ExportChunks streams graph id as GraphChunks of at most batch nodes or
// edges each, the first carrying the graph's info (ExportGraph: no lock is
// held while send runs).
func (gs *Graphs) ExportChunks(ctx context.Context, id string, batch int, send func(*gcnpb.GraphChunk) error) error {
	var info *gcnpb.GraphInfo // attached to the first chunk sent
	sendChunk := func(c *gcnpb.GraphChunk) error {
		c.Info, info = info, nil
		return send(c)
	}
	_, err := gs.ExportGraph(ctx, id, batch,
		func(i GraphInfo) error { info = GraphInfoProto(i); return nil },
		func(ns []graphs.Node) error {
			c := &gcnpb.GraphChunk{Nodes: make([]*gcnpb.Node, len(ns))}
			for i, n := range ns {
				c.Nodes[i] = &gcnpb.Node{Id: n.ID, Features: append([]float32(nil), n.Features...)}
			}
			return sendChunk(c)
		},
		func(es []graphs.Edge) error {
			c := &gcnpb.GraphChunk{Edges: make([]*gcnpb.Edge, len(es))}
			for j, e := range es {
				c.Edges[j] = &gcnpb.Edge{SourceId: e.Source, TargetId: e.Target}
			}
			return sendChunk(c)
		})
	if err == nil && info != nil { // an empty graph: one chunk, info only
		err = sendChunk(&gcnpb.GraphChunk{})
	}
	return err
}

// ReserveDecoded resizes the request's reservation to what its message
// holds once decoded: wireBytes (the message) plus decoded (the transport's
// bound of what decoding allocates, counted from the wire before decoding,
// wirecount.Count). A message that could never fit the whole budget
// is refused at once (TooLarge naming --max-inflight-bytes), without
// waiting.
func (r *Request) ReserveDecoded(ctx context.Context, what string, wireBytes, decoded int64) error {
	r.wire = wireBytes
	if r.res == nil {
		return nil
	}
	need := wireBytes + decoded
	if b := r.svc.cfg.Budget.Bytes(); need > b {
		return gcn.Errorf(gcn.KindTooLarge, "%s of %d bytes needs about %d bytes once decoded, more than the whole request budget of %d (--max-inflight-bytes): send it in smaller parts",
			what, wireBytes, need, b)
	}
	return r.res.Resize(ctx, need)
}
