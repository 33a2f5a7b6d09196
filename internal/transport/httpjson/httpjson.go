// Package httpjson serves the tutorial API as JSON over HTTP:
//
//	POST /v1/process-graph   body: the protojson of GraphData (examples/karate.json)
//	                         answer: the protojson of GCNResult, zero values included
//	GET  /v1/model-info      ?model=NAME&version=N, both optional: the protojson of ModelInfo
//
// (/healthz, /readyz and /metrics on the same listener are internal/server's.)
//
// Requests go through internal/serving exactly as gRPC ProcessGraph does
// (admission, routing, the same validation and messages from
// graphwire.FromMessage, the same model run); errors answer
// {"error": "..."} with the HTTP status of serving's error table.
//
// Routing uses the standard library's http.ServeMux: since Go 1.22 its
// patterns match the method and path wildcards ("POST /v1/process-graph",
// "GET /v2/models/{name}") and answer 405 with an Allow header by themselves,
// which is all these routes and the Open Inference Protocol's REST routes
// need. grpc-gateway would add a generator, generated code and a proxy hop
// for two routes, and could not reuse ProcessGraph's raw-bytes codec anyway.
package httpjson

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// Routes, as registered; internal/metrics labels requests with them.
const (
	RouteProcessGraph = "POST /v1/process-graph"
	RouteModelInfo    = "GET /v1/model-info"
)

// Register adds the routes to mux. Request bodies go through httpx.ReadBody
// (bounded by the service's MaxRequestBytes, 413 past it, decoded from gzip
// or deflate, admitted as they arrive).
func Register(mux *http.ServeMux, svc *serving.Service) {
	h := &handler{svc: svc, log: svc.Logger()}
	mux.HandleFunc(RouteProcessGraph, h.processGraph)
	mux.HandleFunc(RouteModelInfo, h.modelInfo)
}

type handler struct {
	svc *serving.Service
	log *slog.Logger
}

func (h *handler) processGraph(w http.ResponseWriter, r *http.Request) {
	out, err := h.handleGraph(w, r)
	if err != nil {
		h.fail(w, RouteProcessGraph, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// handleGraph does processGraph's work; it returns the response body.
func (h *handler) handleGraph(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ctx := r.Context()
	cfg := h.svc.Config()
	req, body, err := httpx.ReadBody(w, r, int64(cfg.MaxRequestBytes), h.svc.Begin)
	if err != nil {
		return nil, err
	}
	defer req.Close()
	// protojson turns 3 bytes ("{},") into a whole Node: the reservation
	// covers what the body's tokens can become before any is decoded.
	counts := httpx.CountJSON(body)
	// Every node and edge is an object: more objects than both limits
	// allow is refused before protojson builds any of them.
	if cfg.MaxNodes > 0 && cfg.MaxEdges > 0 && counts.Objects > 1+int64(cfg.MaxNodes)+int64(cfg.MaxEdges) {
		return nil, gcn.Errorf(gcn.KindTooLarge, "request has %d JSON objects, more than the limits allow: %d nodes (--max-nodes) and %d edges (--max-edges)",
			counts.Objects, cfg.MaxNodes, cfg.MaxEdges)
	}
	var budget int64
	if cfg.Budget != nil {
		budget = cfg.Budget.Bytes()
	}
	if err := httpx.ReserveDecoded(ctx, req, counts.GraphBytes(), budget); err != nil {
		return nil, err
	}
	m, err := unmarshalGraph(body)
	if err != nil {
		return nil, err
	}
	featureDim, err := req.Route(m.GetModelName(), m.GetModelVersion())
	if err != nil {
		return nil, err
	}
	g, err := graphwire.FromMessage(m, featureDim, graphwire.Limits{MaxNodes: cfg.MaxNodes, MaxEdges: cfg.MaxEdges})
	if err != nil {
		return nil, err
	}
	pred, err := req.Predict(ctx, gcn.Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex})
	if err != nil {
		return nil, err
	}
	lease := req.Lease()
	res := result(g.IDs, pred, g.IncludePredictions, lease.Model.Info().ClassNames,
		lease.Name, strconv.FormatInt(lease.Version, 10))
	out, err := marshalResult(res)
	if err != nil {
		return nil, err
	}
	req.Finish()
	return out, nil
}

func (h *handler) modelInfo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lease, err := h.svc.Acquire(q.Get("model"), q.Get("version"))
	if err != nil {
		h.fail(w, RouteModelInfo, err)
		return
	}
	defer lease.Release()
	out, err := protojsonModelInfo(h.svc.ModelInfo(lease))
	if err != nil {
		h.fail(w, RouteModelInfo, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
}

func protojsonModelInfo(mi *gcnpb.ModelInfo) ([]byte, error) {
	return marshalOptions.Marshal(mi)
}

// fail answers err with serving's HTTP status and {"error": message}.
func (h *handler) fail(w http.ResponseWriter, route string, err error) {
	httpx.WriteError(w, h.log, route, err)
}
