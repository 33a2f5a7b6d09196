package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// Predictor runs a model: *gcn.Model, or a batcher in front of one.
type Predictor interface {
	Info() gcn.Info
	Predict(ctx context.Context, g gcn.Tensors) (gcn.Prediction, error)
}

// gcnService implements GCNService over raw wire bytes.
type gcnService struct {
	predictor Predictor
	info      gcn.Info
	limits    graphwire.Limits
	modelInfo *gcnpb.ModelInfo
	log       *slog.Logger
	metrics   *metrics
}

// gcnServiceHandler is the handler type gcnServiceDesc registers.
type gcnServiceHandler interface {
	processGraph(ctx context.Context, req *rawMessage) (*rawMessage, error)
	getModelInfo(ctx context.Context, req *gcnpb.ModelInfoRequest) (*gcnpb.ModelInfo, error)
}

// gcnServiceDesc is GCNService as in gen/gcn_grpc.pb.go (same service and
// method names, so the same wire contract), except that ProcessGraph takes
// and returns raw bytes instead of generated structs.
var gcnServiceDesc = grpc.ServiceDesc{
	ServiceName: gcnpb.GCNService_ServiceDesc.ServiceName,
	HandlerType: (*gcnServiceHandler)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "ProcessGraph", Handler: processGraphHandler},
		{MethodName: "GetModelInfo", Handler: getModelInfoHandler},
	},
	Metadata: gcnpb.GCNService_ServiceDesc.Metadata,
}

func processGraphHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := new(rawMessage)
	if err := dec(req); err != nil {
		return nil, err
	}
	h := srv.(gcnServiceHandler)
	if interceptor == nil {
		return h.processGraph(ctx, req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: gcnpb.GCNService_ProcessGraph_FullMethodName}
	return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return h.processGraph(ctx, req.(*rawMessage))
	})
}

func getModelInfoHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := new(gcnpb.ModelInfoRequest)
	if err := dec(req); err != nil {
		return nil, err
	}
	h := srv.(gcnServiceHandler)
	if interceptor == nil {
		return h.getModelInfo(ctx, req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: gcnpb.GCNService_GetModelInfo_FullMethodName}
	return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return h.getModelInfo(ctx, req.(*gcnpb.ModelInfoRequest))
	})
}

// processGraph decodes the request straight into the model's tensors, runs
// the model and encodes the response bytes directly.
func (s *gcnService) processGraph(ctx context.Context, req *rawMessage) (res *rawMessage, err error) {
	s.metrics.inFlight.Add(1)
	defer func() {
		s.metrics.inFlight.Add(-1)
		s.metrics.finish(status.Code(err))
	}()
	return s.handleGraph(ctx, req)
}

// handleGraph does processGraph's work; errors it returns are statuses.
func (s *gcnService) handleGraph(ctx context.Context, req *rawMessage) (*rawMessage, error) {
	// The request buffer backs every node id until the response is encoded.
	defer req.free()
	const method = "ProcessGraph"
	start := time.Now()
	g, err := graphwire.Decode(req.data, s.info.FeatureDim, s.limits)
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	decoded := time.Now()
	if g.NumNodes() == 0 {
		return &rawMessage{data: graphwire.AppendResult(nil, nil, nil, nil)}, nil
	}
	pred, err := s.predictor.Predict(ctx, gcn.Tensors{
		NumNodes:  g.NumNodes(),
		Features:  g.Features,
		EdgeIndex: g.EdgeIndex,
	})
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	predicted := time.Now()

	var detail *graphwire.Predictions
	if g.IncludePredictions {
		detail = &graphwire.Predictions{
			NumClasses:    pred.NumClasses,
			Probabilities: pred.Probabilities,
			ClassIndex:    pred.ClassIndex,
			ClassNames:    s.info.ClassNames,
		}
	}
	out := make([]byte, 0, graphwire.ResultSize(g.IDs, detail))
	out = graphwire.AppendResult(out, g.IDs, pred.Scores, detail)
	encode := time.Since(predicted)
	s.metrics.observe(g.NumNodes(), g.NumEdges(), decoded.Sub(start), pred.Timing.Queue,
		pred.Timing.Run, encode, pred.Timing.BatchGraphs)
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "ProcessGraph",
			slog.Int("nodes", g.NumNodes()), slog.Int("edges", g.NumEdges()),
			slog.Int("request_bytes", len(req.data)), slog.Int("response_bytes", len(out)),
			slog.Duration("decode", decoded.Sub(start)),
			slog.Duration("queue", pred.Timing.Queue),
			slog.Duration("run", pred.Timing.Run),
			slog.Duration("predict", predicted.Sub(decoded)),
			slog.Duration("encode", encode),
			slog.Int("batch_graphs", max(pred.Timing.BatchGraphs, 1)),
		)
	}
	return &rawMessage{data: out}, nil
}

func (s *gcnService) getModelInfo(context.Context, *gcnpb.ModelInfoRequest) (*gcnpb.ModelInfo, error) {
	return s.modelInfo, nil
}

// newModelInfo builds the GetModelInfo answer once: it never changes.
func newModelInfo(info gcn.Info, cfg *Config, batching bool) *gcnpb.ModelInfo {
	return &gcnpb.ModelInfo{
		Name:               info.Name,
		Version:            info.Version,
		Sha256:             info.SHA256,
		OnnxruntimeVersion: info.ORTVersion,
		FeatureDim:         int32(info.FeatureDim),
		NumClasses:         int32(info.NumClasses),
		ClassNames:         info.ClassNames,
		ScoreClass:         int32(info.ScoreClass),
		ScoreMeaning:       info.ScoreMeaning,
		OutputKind:         info.OutputKind,
		Dataset:            info.Dataset,
		TestAccuracy:       float32(info.TestAccuracy),
		Metadata:           info.Metadata,
		MaxNodes:           int64(cfg.MaxNodes),
		MaxEdges:           int64(cfg.MaxEdges),
		MaxRequestBytes:    int64(cfg.MaxRequestBytes),
		Batching:           batching,
	}
}
