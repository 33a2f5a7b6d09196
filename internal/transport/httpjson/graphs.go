package httpjson

import (
	"errors"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
	"github.com/gcnserve/gcnserve/internal/wirecount"
)

// Stored-graph routes (GraphService over HTTP/JSON). Bodies and answers are
// the protojson of gcn.proto's messages; the graph id in the path wins over
// one in the body.
const (
	RouteCreateGraph = "POST /v1/graphs"
	RouteListGraphs  = "GET /v1/graphs"
	RouteGetGraph    = "GET /v1/graphs/{id}"
	RouteDeleteGraph = "DELETE /v1/graphs/{id}"
	RouteApplyDelta  = "POST /v1/graphs/{id}/deltas"
	RouteScoreNodes  = "POST /v1/graphs/{id}/score"
	// RouteExportGraph answers newline-delimited JSON: one GraphChunk per
	// line, the first carrying the graph's info.
	RouteExportGraph = "GET /v1/graphs/{id}/export"
)

// RegisterGraphs adds the stored-graph routes to mux.
func RegisterGraphs(mux *http.ServeMux, gs *serving.Graphs, svc *serving.Service) {
	h := &graphHandler{handler: handler{svc: svc, log: svc.Logger()}, gs: gs}
	mux.HandleFunc(RouteCreateGraph, h.create)
	mux.HandleFunc(RouteListGraphs, h.list)
	mux.HandleFunc(RouteGetGraph, h.get)
	mux.HandleFunc(RouteDeleteGraph, h.delete)
	mux.HandleFunc(RouteApplyDelta, h.delta)
	mux.HandleFunc(RouteScoreNodes, h.score)
	mux.HandleFunc(RouteExportGraph, h.export)
}

type graphHandler struct {
	handler
	gs *serving.Graphs
}

// readBody reads r's body into m through the one HTTP prologue
// (httpx.ReadBody: --max-request-bytes, content decoding, read deadline,
// memory admitted as the body arrives), refuses it past --max-nodes or
// --max-edges by its elements, and reserves what its JSON tokens can
// become before decoding. The reservation ends with the decode: what a
// graph keeps afterwards counts against --max-graph-bytes.
func (h *graphHandler) readBody(w http.ResponseWriter, r *http.Request, m proto.Message) error {
	cfg := h.svc.Config()
	req, body, err := httpx.ReadBody(w, r, int64(cfg.MaxRequestBytes), h.svc.Begin)
	if err != nil {
		return err
	}
	defer req.Close()
	// Past --max-nodes or --max-edges by its elements, as gRPC refuses the
	// same request from its wire bytes: refused before protojson builds
	// any of them.
	md := m.ProtoReflect().Descriptor()
	if err := wirecount.CheckLimits(md, wirecount.CountJSON(body, md), nil, cfg.MaxNodes, cfg.MaxEdges); err != nil {
		return err
	}
	var budget int64
	if cfg.Budget != nil {
		budget = cfg.Budget.Bytes()
	}
	if err := httpx.ReserveDecoded(r.Context(), req, httpx.CountJSON(body).GraphBytes(), budget); err != nil {
		return err
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		return gcn.Errorf(gcn.KindInvalidArgument, "request body is not a JSON %s: %s", m.ProtoReflect().Descriptor().Name(), protoMessage(err))
	}
	return nil
}

func (h *graphHandler) reply(w http.ResponseWriter, route string, m proto.Message, err error) {
	if err != nil {
		h.fail(w, route, err)
		return
	}
	out, err := marshalOptions.Marshal(m)
	if err != nil {
		h.fail(w, route, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(out, '\n'))
}

func (h *graphHandler) create(w http.ResponseWriter, r *http.Request) {
	req := new(gcnpb.CreateGraphRequest)
	if err := h.readBody(w, r, req); err != nil {
		h.fail(w, RouteCreateGraph, err)
		return
	}
	var initial *graphs.Delta
	if g := req.GetGraph(); g != nil && (len(g.GetNodes()) > 0 || len(g.GetEdges()) > 0) {
		initial = &graphs.Delta{}
		serving.AppendGraphData(initial, g.GetNodes(), g.GetEdges())
	}
	info, err := h.gs.CreateGraph(r.Context(), req.GetGraphId(), req.GetModelName(), req.GetModelVersion(), initial)
	h.reply(w, RouteCreateGraph, serving.GraphInfoProto(info), err)
}

func (h *graphHandler) list(w http.ResponseWriter, _ *http.Request) {
	out := &gcnpb.ListGraphsResponse{}
	for _, i := range h.gs.ListGraphs() {
		out.Graphs = append(out.Graphs, serving.GraphInfoProto(i))
	}
	h.reply(w, RouteListGraphs, out, nil)
}

func (h *graphHandler) get(w http.ResponseWriter, r *http.Request) {
	info, err := h.gs.GetGraph(r.PathValue("id"))
	h.reply(w, RouteGetGraph, serving.GraphInfoProto(info), err)
}

func (h *graphHandler) delete(w http.ResponseWriter, r *http.Request) {
	err := h.gs.DeleteGraph(r.PathValue("id"))
	h.reply(w, RouteDeleteGraph, &gcnpb.DeleteGraphResponse{}, err)
}

func (h *graphHandler) delta(w http.ResponseWriter, r *http.Request) {
	req := new(gcnpb.DeltaRequest)
	if err := h.readBody(w, r, req); err != nil {
		h.fail(w, RouteApplyDelta, err)
		return
	}
	rev, dup, err := h.gs.ApplyDeltaResult(r.Context(), r.PathValue("id"), serving.DeltaFromProto(req))
	h.reply(w, RouteApplyDelta, &gcnpb.DeltaResponse{Revision: rev, Duplicate: dup}, err)
}

func (h *graphHandler) score(w http.ResponseWriter, r *http.Request) {
	req := new(gcnpb.ScoreRequest)
	if err := h.readBody(w, r, req); err != nil {
		h.fail(w, RouteScoreNodes, err)
		return
	}
	res, err := h.gs.ScoreNodes(r.Context(), r.PathValue("id"), req.GetNodeIds(), req.GetMinRevision())
	if err != nil {
		h.fail(w, RouteScoreNodes, err)
		return
	}
	h.reply(w, RouteScoreNodes, serving.ScoreProto(res, req.GetIncludePredictions()), nil)
}

func (h *graphHandler) export(w http.ResponseWriter, r *http.Request) {
	// Each line must reach the client within --stream-send-timeout: one
	// that stops reading is cut off (the export holds no lock meanwhile,
	// serving.ExportGraph).
	rc := http.NewResponseController(w)
	timeout := h.gs.SendTimeout()
	started := false
	err := h.gs.ExportChunks(r.Context(), r.PathValue("id"), 1024, func(c *gcnpb.GraphChunk) error {
		out, err := protojson.Marshal(c)
		if err != nil {
			return err
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
		}
		if timeout > 0 {
			rc.SetWriteDeadline(time.Now().Add(timeout))
		}
		_, err = w.Write(append(out, '\n'))
		return err
	})
	if err == nil && timeout > 0 {
		// The last bytes go out within the timeout too; then the
		// connection, which may serve further requests, gets no deadline.
		rc.SetWriteDeadline(time.Now().Add(timeout))
		if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
			err = ferr
		}
		rc.SetWriteDeadline(time.Time{})
	}
	if err != nil && !started {
		h.fail(w, RouteExportGraph, err)
	} else if err != nil {
		h.log.Warn("graph export cut short", "graph", gcnerr.Echo(r.PathValue("id")), "err", err)
		// The client has a partial body: end the connection, not just
		// the response, so it cannot take it for the whole graph.
		panic(http.ErrAbortHandler)
	}
}
