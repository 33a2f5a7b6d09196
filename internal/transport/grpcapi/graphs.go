package grpcapi

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/wirecount"
)

// RegisterGraphs adds GraphService (stored graphs) to s. It only converts
// messages and calls serving.Graphs. s must use the server's codec
// (NewCodec): the requests that carry graph content (CreateGraph,
// LoadGraph's chunks, ApplyDelta, ScoreNodes) are read as raw bytes after
// admission, like ProcessGraph's, counted from the wire (wirecount: their
// node ids, nodes and edges checked against --max-nodes and --max-edges,
// what they become admitted), and only then decoded.
func RegisterGraphs(s grpc.ServiceRegistrar, gs *serving.Graphs, svc *serving.Service) {
	s.RegisterService(&graphServiceDesc, &graphService{gs: gs, svc: svc, log: svc.Logger()})
}

// GraphServiceName is the gRPC service name of stored graphs.
const GraphServiceName = "GraphService"

// exportBatch is how many nodes or edges one ExportGraph chunk holds: at
// 34 features about 150 KB, far below every message limit.
const exportBatch = 1024

type graphService struct {
	gs  *serving.Graphs
	svc *serving.Service
	log *slog.Logger
}

// graphServiceDesc is GraphService as in gen/gcn_grpc.pb.go (same names,
// same wire contract), with its own handlers for the methods whose
// requests can be big (graphRequest) and for the streams (read and send
// deadlines).
var graphServiceDesc = grpc.ServiceDesc{
	ServiceName: gcnpb.GraphService_ServiceDesc.ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "CreateGraph", Handler: graphRequest(gcnpb.GraphService_CreateGraph_FullMethodName, (*graphService).createGraph)},
		{MethodName: "ApplyDelta", Handler: graphRequest(gcnpb.GraphService_ApplyDelta_FullMethodName, (*graphService).applyDelta)},
		{MethodName: "ScoreNodes", Handler: graphRequest(gcnpb.GraphService_ScoreNodes_FullMethodName, (*graphService).scoreNodes)},
		{MethodName: "GetGraph", Handler: graphUnary(gcnpb.GraphService_GetGraph_FullMethodName, (*graphService).getGraph)},
		{MethodName: "ListGraphs", Handler: graphUnary(gcnpb.GraphService_ListGraphs_FullMethodName, (*graphService).listGraphs)},
		{MethodName: "DeleteGraph", Handler: graphUnary(gcnpb.GraphService_DeleteGraph_FullMethodName, (*graphService).deleteGraph)},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "LoadGraph", Handler: loadGraphHandler, ClientStreams: true},
		{StreamName: "ExportGraph", Handler: exportGraphHandler, ServerStreams: true},
	},
	Metadata: gcnpb.GraphService_ServiceDesc.Metadata,
}

// graphRequest adapts a method whose request may be as big as
// --max-request-bytes: admission first (the read bound, as ProcessGraph),
// then the message is read as raw bytes, its decoded size bounded from the
// wire and reserved (a message that would not fit is refused before it is
// decoded), then it is decoded. Malformed bytes are INVALID_ARGUMENT, a
// message over its limit RESOURCE_EXHAUSTED, never gRPC's INTERNAL.
func graphRequest[Req any, PReq interface {
	*Req
	proto.Message
}, Res any](method string, f func(*graphService, context.Context, PReq) (*Res, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		s := srv.(*graphService)
		handle := func(ctx context.Context, _ any) (any, error) {
			req, err := s.svc.BeginRead(ctx, ReadBound(ctx, s.svc.Config().MaxRequestBytes))
			if err != nil {
				return nil, serving.GRPCStatus(s.log, method, err)
			}
			defer req.Close()
			in := PReq(new(Req))
			if err := s.receive(ctx, req, in, func(raw *rawMessage) error { return dec(raw) }, nil); err != nil {
				return nil, serving.GRPCStatus(s.log, method, err)
			}
			res, err := f(s, ctx, in)
			return res, serving.GRPCStatus(s.log, method, err)
		}
		if interceptor == nil {
			return handle(ctx, nil)
		}
		return interceptor(ctx, (*rawMessage)(nil), &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, handle)
	}
}

// receive reads one request message as raw bytes with recv, counts what
// its wire bytes declare, refuses it past --max-nodes or --max-edges
// (wirecount.CheckLimits; before: elements of earlier messages of the
// same call), reserves what it becomes once decoded in req, and only then
// decodes it into m: a refused message never has its elements allocated.
func (s *graphService) receive(ctx context.Context, req *serving.Request, m proto.Message, recv func(*rawMessage) error, before func(wirecount.Field) int64) error {
	raw := new(rawMessage)
	if err := recv(raw); err != nil {
		return err // gRPC's own status (stream ended, deadline, too large)
	}
	defer raw.free()
	if raw.err != nil {
		return raw.err
	}
	md := m.ProtoReflect().Descriptor()
	counts, err := wirecount.Count(raw.data, md)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed %s: %v", md.Name(), err)
	}
	cfg := s.svc.Config()
	if err := wirecount.CheckLimits(md, counts, before, cfg.MaxNodes, cfg.MaxEdges); err != nil {
		return err
	}
	if err := req.ReserveDecoded(ctx, string(md.Name()), int64(len(raw.data)), counts.Decoded); err != nil {
		return err
	}
	if err := proto.Unmarshal(raw.data, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed %s: %v", md.Name(), err)
	}
	return nil
}

// graphUnary adapts a method whose request is a few bytes (an id): the
// generated message through the server's codec and its small limit.
func graphUnary[Req any, PReq interface {
	*Req
	proto.Message
}, Res any](method string, f func(*graphService, context.Context, PReq) (*Res, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		s := srv.(*graphService)
		in := PReq(new(Req))
		if err := receiveSmall(in, dec); err != nil {
			return nil, err
		}
		handle := func(ctx context.Context, req any) (any, error) {
			res, err := f(s, ctx, req.(PReq))
			return res, serving.GRPCStatus(s.log, method, err)
		}
		if interceptor == nil {
			return handle(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, handle)
	}
}

// refusable carries a small request message through the codec and takes
// its refusals (over the method's few-KB limit, malformed): the handler
// answers them with their own code, not gRPC's INTERNAL.
type refusable struct {
	proto.Message
	err error
}

// RefuseRecv implements RecvRefuser.
func (r *refusable) RefuseRecv(err error) { r.err = err }

// receiveSmall decodes one small request message into m with recv.
func receiveSmall(m proto.Message, recv func(any) error) error {
	in := &refusable{Message: m}
	if err := recv(in); err != nil {
		return err
	}
	return in.err
}

func (s *graphService) createGraph(ctx context.Context, req *gcnpb.CreateGraphRequest) (*gcnpb.GraphInfo, error) {
	var initial *graphs.Delta
	if g := req.GetGraph(); g != nil && (len(g.GetNodes()) > 0 || len(g.GetEdges()) > 0) {
		initial = &graphs.Delta{}
		serving.AppendGraphData(initial, g.GetNodes(), g.GetEdges())
	}
	info, err := s.gs.CreateGraph(ctx, req.GetGraphId(), req.GetModelName(), req.GetModelVersion(), initial)
	if err != nil {
		return nil, err
	}
	return serving.GraphInfoProto(info), nil
}

// loadGraphHandler receives LoadGraph's chunks one at a time, each read
// after admission and within --request-read-timeout of asking for it (a
// stream that stops sending is cut off), and counts what the chunks hold
// in --max-graph-bytes as they arrive (serving.GraphLoad).
func loadGraphHandler(srv any, stream grpc.ServerStream) error {
	const method = gcnpb.GraphService_LoadGraph_FullMethodName
	s := srv.(*graphService)
	err := s.loadGraph(stream)
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && stream.Context().Err() != nil {
		return err // the stream's own end (read deadline, client gone)
	}
	return serving.GRPCStatus(s.log, method, err)
}

func (s *graphService) loadGraph(stream grpc.ServerStream) error {
	ctx := stream.Context()
	cfg := s.svc.Config()
	deadline := CallDeadlineFrom(ctx)
	defer deadline.Disarm()
	var (
		first *gcnpb.LoadGraphChunk
		load  *serving.GraphLoad
	)
	defer func() {
		if load != nil {
			load.Release()
		}
	}()
	d := &graphs.Delta{}
	for {
		req, err := s.svc.BeginRead(ctx, ReadBound(ctx, cfg.MaxRequestBytes))
		if err != nil {
			return err
		}
		c := new(gcnpb.LoadGraphChunk)
		if first != nil {
			deadline.ArmRead() // the first chunk's is the call's own
		}
		// The stream is refused past the limits as it arrives, not at its
		// end: a chunk that would take it past one is refused from its
		// wire bytes, before it is decoded.
		err = s.receive(ctx, req, c, func(raw *rawMessage) error { return stream.RecvMsg(raw) }, func(f wirecount.Field) int64 {
			if f.Edges {
				return int64(len(d.AddEdges))
			}
			return int64(len(d.UpsertNodes))
		})
		deadline.Disarm()
		if errors.Is(err, io.EOF) {
			req.Close()
			break
		}
		if err != nil {
			req.Close()
			return err
		}
		if first == nil {
			first = c
			if load, err = s.gs.BeginLoad(c.GetGraphId()); err != nil {
				req.Close()
				return err
			}
		}
		err = load.Add(c.GetNodes(), c.GetEdges())
		if err == nil {
			serving.AppendGraphData(d, c.GetNodes(), c.GetEdges())
		}
		req.Close()
		if err != nil {
			return err
		}
	}
	if first == nil {
		return gcn.Errorf(gcn.KindInvalidArgument, "LoadGraph stream has no chunk (the first names the graph)")
	}
	// The graph counts itself from here on.
	load.Release()
	info, err := s.gs.CreateGraph(ctx, first.GetGraphId(), first.GetModelName(), first.GetModelVersion(), d)
	if err != nil {
		return err
	}
	return stream.SendMsg(serving.GraphInfoProto(info))
}

func (s *graphService) applyDelta(ctx context.Context, req *gcnpb.DeltaRequest) (*gcnpb.DeltaResponse, error) {
	d := serving.DeltaFromProto(req)
	rev, dup, err := s.gs.ApplyDeltaResult(ctx, req.GetGraphId(), d)
	if err != nil {
		return nil, err
	}
	return &gcnpb.DeltaResponse{Revision: rev, Duplicate: dup}, nil
}

func (s *graphService) scoreNodes(ctx context.Context, req *gcnpb.ScoreRequest) (*gcnpb.ScoreResponse, error) {
	r, err := s.gs.ScoreNodes(ctx, req.GetGraphId(), req.GetNodeIds(), req.GetMinRevision())
	if err != nil {
		return nil, err
	}
	return serving.ScoreProto(r, req.GetIncludePredictions()), nil
}

func (s *graphService) getGraph(_ context.Context, req *gcnpb.GetGraphRequest) (*gcnpb.GraphInfo, error) {
	info, err := s.gs.GetGraph(req.GetGraphId())
	if err != nil {
		return nil, err
	}
	return serving.GraphInfoProto(info), nil
}

func (s *graphService) listGraphs(context.Context, *gcnpb.ListGraphsRequest) (*gcnpb.ListGraphsResponse, error) {
	out := &gcnpb.ListGraphsResponse{}
	for _, i := range s.gs.ListGraphs() {
		out.Graphs = append(out.Graphs, serving.GraphInfoProto(i))
	}
	return out, nil
}

func (s *graphService) deleteGraph(_ context.Context, req *gcnpb.DeleteGraphRequest) (*gcnpb.DeleteGraphResponse, error) {
	if err := s.gs.DeleteGraph(req.GetGraphId()); err != nil {
		return nil, err
	}
	return &gcnpb.DeleteGraphResponse{}, nil
}

// exportGraphHandler streams the graph; each chunk must be taken by the
// client within the send timeout (--stream-send-timeout), or the stream is
// cut off: a client that never reads holds no lock (serving.ExportGraph)
// and, through HTTP/2 flow control, no more than a window of buffered
// chunks, until then.
func exportGraphHandler(srv any, stream grpc.ServerStream) error {
	const method = gcnpb.GraphService_ExportGraph_FullMethodName
	s := srv.(*graphService)
	req := new(gcnpb.ExportGraphRequest)
	if err := receiveSmall(req, stream.RecvMsg); err != nil {
		return err
	}
	ctx := stream.Context()
	deadline := CallDeadlineFrom(ctx)
	err := s.gs.ExportChunks(ctx, req.GetGraphId(), exportBatch, func(c *gcnpb.GraphChunk) error {
		deadline.ArmSend()
		defer deadline.Disarm()
		return stream.SendMsg(c)
	})
	if err != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return status.Errorf(codes.DeadlineExceeded, "the client took no export chunk within --stream-send-timeout: export cut off")
		}
		return status.FromContextError(ctx.Err()).Err()
	}
	return serving.GRPCStatus(s.log, method, err)
}

// CallDeadline is a call's deadline as the server's guard keeps it (in the
// call's context; CallDeadlineFrom): streaming handlers re-arm it around
// each message so a client that stops sending, or stops reading, is cut
// off: the call's context ends, which ends a blocked receive or send.
type CallDeadline interface {
	// ArmRead: cut the call off unless the next request message arrives
	// within the read timeout (--request-read-timeout).
	ArmRead()
	// ArmSend: cut the call off unless the client takes the response
	// message being sent within the send timeout (--stream-send-timeout).
	ArmSend()
	// Disarm stops the deadline.
	Disarm()
}

// CallDeadlineKey is the context key under which the server's guard keeps
// a call's CallDeadline.
type CallDeadlineKey struct{}

// CallDeadlineFrom returns ctx's CallDeadline, or one that does nothing.
func CallDeadlineFrom(ctx context.Context) CallDeadline {
	if d, ok := ctx.Value(CallDeadlineKey{}).(CallDeadline); ok {
		return d
	}
	return noDeadline{}
}

type noDeadline struct{}

func (noDeadline) ArmRead() {}
func (noDeadline) ArmSend() {}
func (noDeadline) Disarm()  {}
