package grpcapi

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/serving"
)

// RegisterGraphs adds GraphService (stored graphs) to s. It only converts
// messages and calls serving.Graphs.
func RegisterGraphs(s grpc.ServiceRegistrar, gs *serving.Graphs, svc *serving.Service) {
	gcnpb.RegisterGraphServiceServer(s, &graphService{gs: gs, svc: svc, log: svc.Logger()})
}

// GraphServiceName is the gRPC service name of stored graphs.
const GraphServiceName = "GraphService"

// exportBatch is how many nodes or edges one ExportGraph chunk holds: at
// 34 features about 150 KB, far below every message limit.
const exportBatch = 1024

type graphService struct {
	gcnpb.UnimplementedGraphServiceServer
	gs  *serving.Graphs
	svc *serving.Service
	log *slog.Logger
}

func (s *graphService) status(method string, err error) error {
	return serving.GRPCStatus(s.log, method, err)
}

func (s *graphService) CreateGraph(ctx context.Context, req *gcnpb.CreateGraphRequest) (*gcnpb.GraphInfo, error) {
	var initial *graphs.Delta
	if g := req.GetGraph(); g != nil && (len(g.GetNodes()) > 0 || len(g.GetEdges()) > 0) {
		initial = &graphs.Delta{}
		serving.AppendGraphData(initial, g.GetNodes(), g.GetEdges())
	}
	info, err := s.gs.CreateGraph(ctx, req.GetGraphId(), req.GetModelName(), req.GetModelVersion(), initial)
	if err != nil {
		return nil, s.status(gcnpb.GraphService_CreateGraph_FullMethodName, err)
	}
	return serving.GraphInfoProto(info), nil
}

func (s *graphService) LoadGraph(stream grpc.ClientStreamingServer[gcnpb.LoadGraphChunk, gcnpb.GraphInfo]) error {
	const method = gcnpb.GraphService_LoadGraph_FullMethodName
	cfg := s.svc.Config()
	var first *gcnpb.LoadGraphChunk
	d := &graphs.Delta{}
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err // the stream's own status
		}
		if first == nil {
			first = c
		}
		serving.AppendGraphData(d, c.GetNodes(), c.GetEdges())
		// Refuse a stream past the limits as it arrives, not at its end.
		if cfg.MaxNodes > 0 && len(d.UpsertNodes) > cfg.MaxNodes {
			return s.status(method, gcn.Errorf(gcn.KindTooLarge, "graph has more than %d nodes, limit is %d (--max-nodes)", len(d.UpsertNodes)-1, cfg.MaxNodes))
		}
		if cfg.MaxEdges > 0 && len(d.AddEdges) > cfg.MaxEdges {
			return s.status(method, gcn.Errorf(gcn.KindTooLarge, "graph has more than %d edges, limit is %d (--max-edges)", len(d.AddEdges)-1, cfg.MaxEdges))
		}
	}
	if first == nil {
		return s.status(method, gcn.Errorf(gcn.KindInvalidArgument, "LoadGraph stream has no chunk (the first names the graph)"))
	}
	info, err := s.gs.CreateGraph(stream.Context(), first.GetGraphId(), first.GetModelName(), first.GetModelVersion(), d)
	if err != nil {
		return s.status(method, err)
	}
	return stream.SendAndClose(serving.GraphInfoProto(info))
}

func (s *graphService) ApplyDelta(ctx context.Context, req *gcnpb.DeltaRequest) (*gcnpb.DeltaResponse, error) {
	d := serving.DeltaFromProto(req)
	rev, dup, err := s.gs.ApplyDeltaResult(ctx, req.GetGraphId(), d)
	if err != nil {
		return nil, s.status(gcnpb.GraphService_ApplyDelta_FullMethodName, err)
	}
	return &gcnpb.DeltaResponse{Revision: rev, Duplicate: dup}, nil
}

func (s *graphService) ScoreNodes(ctx context.Context, req *gcnpb.ScoreRequest) (*gcnpb.ScoreResponse, error) {
	r, err := s.gs.ScoreNodes(ctx, req.GetGraphId(), req.GetNodeIds(), req.GetMinRevision())
	if err != nil {
		return nil, s.status(gcnpb.GraphService_ScoreNodes_FullMethodName, err)
	}
	return serving.ScoreProto(r, req.GetIncludePredictions()), nil
}

func (s *graphService) GetGraph(_ context.Context, req *gcnpb.GetGraphRequest) (*gcnpb.GraphInfo, error) {
	info, err := s.gs.GetGraph(req.GetGraphId())
	if err != nil {
		return nil, s.status(gcnpb.GraphService_GetGraph_FullMethodName, err)
	}
	return serving.GraphInfoProto(info), nil
}

func (s *graphService) ListGraphs(context.Context, *gcnpb.ListGraphsRequest) (*gcnpb.ListGraphsResponse, error) {
	out := &gcnpb.ListGraphsResponse{}
	for _, i := range s.gs.ListGraphs() {
		out.Graphs = append(out.Graphs, serving.GraphInfoProto(i))
	}
	return out, nil
}

func (s *graphService) DeleteGraph(_ context.Context, req *gcnpb.DeleteGraphRequest) (*gcnpb.DeleteGraphResponse, error) {
	if err := s.gs.DeleteGraph(req.GetGraphId()); err != nil {
		return nil, s.status(gcnpb.GraphService_DeleteGraph_FullMethodName, err)
	}
	return &gcnpb.DeleteGraphResponse{}, nil
}

func (s *graphService) ExportGraph(req *gcnpb.ExportGraphRequest, stream grpc.ServerStreamingServer[gcnpb.GraphChunk]) error {
	err := s.gs.ExportChunks(req.GetGraphId(), exportBatch, stream.Send)
	return s.status(gcnpb.GraphService_ExportGraph_FullMethodName, err)
}
