// Package grpcapi is the tutorial's gRPC service, GCNService: ProcessGraph
// (and the additions GetModelInfo and ListModels). It only decodes, calls
// internal/serving and encodes. ProcessGraph works on wire bytes: requests
// are decoded straight into tensors (internal/graphwire) and responses
// encoded directly, which needs the server built with Codec.
package grpcapi

import (
	"context"
	"log/slog"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/serving"
)

// Register adds GCNService to s. s must use Codec.
func Register(s grpc.ServiceRegistrar, svc *serving.Service) {
	s.RegisterService(&serviceDesc, &service{svc: svc, log: svc.Logger()})
}

// ServiceName is the gRPC service name ("GCNService": gcn.proto has no
// package), also its health service name.
const ServiceName = "GCNService"

// MaxSmallRequestBytes bounds every request message but the inference
// requests (ProcessGraph, ModelInfer), after decompression: a model name
// and version, a health service name. A bigger one is refused before it is
// inflated or decoded.
const MaxSmallRequestBytes = 4 << 10

// service implements GCNService over raw wire bytes.
type service struct {
	svc *serving.Service
	log *slog.Logger
}

// serviceDesc is GCNService as in gen/gcn_grpc.pb.go (same service and
// method names, so the same wire contract), except that ProcessGraph takes
// and returns raw bytes instead of generated structs, and reads its request
// only after admission control.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: gcnpb.GCNService_ServiceDesc.ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "ProcessGraph", Handler: processGraphHandler},
		{MethodName: "GetModelInfo", Handler: unary(gcnpb.GCNService_GetModelInfo_FullMethodName, (*service).getModelInfo)},
		{MethodName: "ListModels", Handler: unary(gcnpb.GCNService_ListModels_FullMethodName, (*service).listModels)},
	},
	Metadata: gcnpb.GCNService_ServiceDesc.Metadata,
}

// processGraphHandler runs the interceptors (authentication, panic
// recovery) first, then admission control, and only then reads the request
// message: grpc-go reads a unary message only when dec is called, so a
// request waiting for memory holds no more than HTTP/2's flow-control
// window, and an unauthenticated one holds nothing.
func processGraphHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*service)
	handle := func(ctx context.Context, _ any) (any, error) { return s.processGraph(ctx, dec) }
	if interceptor == nil {
		return handle(ctx, nil)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: gcnpb.GCNService_ProcessGraph_FullMethodName}
	return interceptor(ctx, (*rawMessage)(nil), info, handle)
}

// unary adapts a method on generated messages to a grpc.MethodDesc handler.
// It reads the request as raw bytes and unmarshals it itself: when gRPC's
// codec fails it answers INTERNAL on its own, but bytes that are not the
// request message are the client's fault (INVALID_ARGUMENT), as in
// ProcessGraph.
func unary[Req any, PReq interface {
	*Req
	proto.Message
}, Res any](method string, f func(*service, context.Context, PReq) (*Res, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		s := srv.(*service)
		raw := &rawMessage{limit: MaxSmallRequestBytes}
		if err := dec(raw); err != nil {
			return nil, err // gRPC's own status (message too large, bad compression)
		}
		if raw.err != nil {
			return nil, raw.err
		}
		req := PReq(new(Req))
		err := proto.Unmarshal(raw.data, req)
		raw.free()
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "malformed %s: %v", req.ProtoReflect().Descriptor().Name(), err)
		}
		handle := func(ctx context.Context, req any) (any, error) {
			res, err := f(s, ctx, req.(PReq))
			return res, serving.GRPCStatus(s.log, method, err)
		}
		if interceptor == nil {
			return handle(ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, handle)
	}
}

func (s *service) processGraph(ctx context.Context, dec func(any) error) (*rawMessage, error) {
	const method = gcnpb.GCNService_ProcessGraph_FullMethodName
	res, err := s.handleGraph(ctx, dec)
	return res, serving.GRPCStatus(s.log, method, err)
}

func (s *service) handleGraph(ctx context.Context, dec func(any) error) (*rawMessage, error) {
	cfg := s.svc.Config()
	req, err := s.svc.BeginRead(ctx, ReadBound(ctx, cfg.MaxRequestBytes))
	if err != nil {
		return nil, err
	}
	defer req.Close()
	raw := new(rawMessage)
	if err := dec(raw); err != nil {
		// gRPC's own status (message too large, bad compression).
		return nil, err
	}
	// The request buffer backs every node id until the response is encoded.
	defer raw.free()
	if raw.err != nil {
		return nil, raw.err
	}
	if err := req.SetWireBytes(ctx, int64(len(raw.data))); err != nil {
		return nil, err
	}
	g, err := graphwire.DecodePooled(raw.data, req.Route,
		graphwire.Limits{MaxNodes: cfg.MaxNodes, MaxEdges: cfg.MaxEdges}, req.TensorPool())
	if err != nil {
		return nil, err
	}
	defer req.Recycle(g)
	lease := req.Lease()
	version := strconv.FormatInt(lease.Version, 10)
	pred, err := req.Predict(ctx, gcn.Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex})
	if err != nil {
		return nil, err
	}
	var detail *graphwire.Predictions
	if g.IncludePredictions {
		detail = &graphwire.Predictions{
			NumClasses:    pred.NumClasses,
			Probabilities: pred.Probabilities,
			ClassIndex:    pred.ClassIndex,
			ClassNames:    lease.Model.Info().ClassNames,
		}
	}
	out := make([]byte, 0, graphwire.ResultSize(g.IDs, detail)+graphwire.ModelSize(lease.Name, version))
	out = graphwire.AppendResult(out, g.IDs, pred.Scores, detail)
	out = graphwire.AppendModel(out, lease.Name, version)
	req.Finish()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		decode, queue, run := req.Timing()
		s.log.LogAttrs(ctx, slog.LevelDebug, "ProcessGraph",
			slog.String("model", lease.Name), slog.String("version", version),
			slog.Int("nodes", g.NumNodes()), slog.Int("edges", g.NumEdges()),
			slog.Int("request_bytes", len(raw.data)), slog.Int("response_bytes", len(out)),
			slog.Duration("decode", decode), slog.Duration("queue", queue), slog.Duration("run", run),
			slog.Int("batch_graphs", max(pred.Timing.BatchGraphs, 1)),
		)
	}
	return &rawMessage{data: out}, nil
}

func (s *service) getModelInfo(_ context.Context, req *gcnpb.ModelInfoRequest) (*gcnpb.ModelInfo, error) {
	lease, err := s.svc.Acquire(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	return s.svc.ModelInfo(lease), nil
}

func (s *service) listModels(context.Context, *gcnpb.ListModelsRequest) (*gcnpb.ListModelsResponse, error) {
	return s.svc.ListModels(), nil
}

// ReadBound is what a request message of up to maxBytes can hold while it
// is received: gRPC's frame buffers and the contiguous copy the codec makes
// (twice the message); a compressed call (grpc-encoding) holds the
// compressed bytes and their copy, then the inflated message and its
// contiguous copy (three times at most). The inference methods reserve it
// before they read.
func ReadBound(ctx context.Context, maxBytes int) int64 {
	if st, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ RecvCompress() string }); ok {
		if c := st.RecvCompress(); c != "" && c != "identity" {
			return 3 * int64(maxBytes)
		}
	}
	return 2 * int64(maxBytes)
}
