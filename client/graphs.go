package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// Stored graphs (GraphService): a graph uploaded once, changed by deltas,
// scored a few nodes at a time. docs/STATEFUL.md describes the semantics.

func (c *Client) graphs() gcnpb.GraphServiceClient { return gcnpb.NewGraphServiceClient(c.conn) }

// CreateGraph creates graph id bound to the client's model (WithModel;
// default: the server's default model), with g as its content (nil:
// empty). For a graph bigger than one message use LoadGraph.
func (c *Client) CreateGraph(ctx context.Context, id string, g *gcnpb.GraphData, opts ...grpc.CallOption) (*gcnpb.GraphInfo, error) {
	return c.graphs().CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: id, ModelName: c.model, ModelVersion: c.version, Graph: g}, opts...)
}

// DefaultChunkBytes is the size LoadGraph aims for per chunk: well below
// the 4 MiB default receive limit of gRPC servers.
const DefaultChunkBytes = 1 << 20

// LoadGraph creates graph id from g streamed in chunks of about
// DefaultChunkBytes, nodes first; progress, when not nil, is called after
// each chunk with the nodes and edges sent so far. The graph is created
// only once the whole stream arrived.
func (c *Client) LoadGraph(ctx context.Context, id string, g *gcnpb.GraphData, progress func(nodes, edges int), opts ...grpc.CallOption) (*gcnpb.GraphInfo, error) {
	stream, err := c.graphs().LoadGraph(ctx, opts...)
	if err != nil {
		return nil, err
	}
	chunk := &gcnpb.LoadGraphChunk{GraphId: id, ModelName: c.model, ModelVersion: c.version}
	size := 0
	sentNodes, sentEdges := 0, 0
	flush := func() error {
		if err := stream.Send(chunk); err != nil {
			return err
		}
		sentNodes += len(chunk.Nodes)
		sentEdges += len(chunk.Edges)
		if progress != nil {
			progress(sentNodes, sentEdges)
		}
		chunk, size = &gcnpb.LoadGraphChunk{}, 0
		return nil
	}
	for _, n := range g.GetNodes() {
		chunk.Nodes = append(chunk.Nodes, n)
		if size += proto.Size(n) + 4; size >= DefaultChunkBytes {
			if err := flush(); err != nil {
				return nil, closeErr(stream, err)
			}
		}
	}
	for _, e := range g.GetEdges() {
		chunk.Edges = append(chunk.Edges, e)
		if size += proto.Size(e) + 3; size >= DefaultChunkBytes {
			if err := flush(); err != nil {
				return nil, closeErr(stream, err)
			}
		}
	}
	if len(chunk.Nodes) > 0 || len(chunk.Edges) > 0 || sentNodes+sentEdges == 0 {
		if err := flush(); err != nil {
			return nil, closeErr(stream, err)
		}
	}
	return stream.CloseAndRecv()
}

// closeErr returns the server's status when Send failed because the server
// ended the stream (Send itself says only io.EOF).
func closeErr(stream grpc.ClientStreamingClient[gcnpb.LoadGraphChunk, gcnpb.GraphInfo], err error) error {
	if errors.Is(err, io.EOF) {
		if _, err2 := stream.CloseAndRecv(); err2 != nil {
			return err2
		}
	}
	return err
}

// ApplyDelta applies d to its graph. A delta without an idempotency key
// gets a random one, so the retry policy's resend after UNAVAILABLE
// applies it once.
func (c *Client) ApplyDelta(ctx context.Context, d *gcnpb.DeltaRequest, opts ...grpc.CallOption) (*gcnpb.DeltaResponse, error) {
	if d.GetIdempotencyKey() == "" {
		var b [16]byte
		rand.Read(b[:])
		d = proto.CloneOf(d)
		d.IdempotencyKey = hex.EncodeToString(b[:])
	}
	return c.graphs().ApplyDelta(ctx, d, opts...)
}

// ScoreNodes scores nodes of graph id.
func (c *Client) ScoreNodes(ctx context.Context, req *gcnpb.ScoreRequest, opts ...grpc.CallOption) (*gcnpb.ScoreResponse, error) {
	return c.graphs().ScoreNodes(ctx, req, opts...)
}

// GetGraph describes graph id.
func (c *Client) GetGraph(ctx context.Context, id string, opts ...grpc.CallOption) (*gcnpb.GraphInfo, error) {
	return c.graphs().GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: id}, opts...)
}

// ListGraphs lists the stored graphs.
func (c *Client) ListGraphs(ctx context.Context, opts ...grpc.CallOption) (*gcnpb.ListGraphsResponse, error) {
	return c.graphs().ListGraphs(ctx, &gcnpb.ListGraphsRequest{}, opts...)
}

// DeleteGraph deletes graph id.
func (c *Client) DeleteGraph(ctx context.Context, id string, opts ...grpc.CallOption) error {
	_, err := c.graphs().DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: id}, opts...)
	return err
}

// ExportGraph streams graph id back and returns it as one GraphData (the
// graph's info from the first chunk beside it).
func (c *Client) ExportGraph(ctx context.Context, id string, opts ...grpc.CallOption) (*gcnpb.GraphData, *gcnpb.GraphInfo, error) {
	stream, err := c.graphs().ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: id}, opts...)
	if err != nil {
		return nil, nil, err
	}
	g := &gcnpb.GraphData{}
	var info *gcnpb.GraphInfo
	for {
		ch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return g, info, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if ch.Info != nil {
			info = ch.Info
		}
		g.Nodes = append(g.Nodes, ch.Nodes...)
		g.Edges = append(g.Edges, ch.Edges...)
	}
}
