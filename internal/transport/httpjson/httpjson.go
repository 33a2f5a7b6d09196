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
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/serving"
)

// Routes, as registered; internal/metrics labels requests with them.
const (
	RouteProcessGraph = "POST /v1/process-graph"
	RouteModelInfo    = "GET /v1/model-info"
)

// Register adds the routes to mux. Request bodies are bounded by the
// service's MaxRequestBytes (413 past it).
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
	limit := int64(cfg.MaxRequestBytes)
	if limit <= 0 {
		limit = math.MaxInt64 // no bound configured
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	// Admission before reading: a request waiting for memory holds no more
	// than the socket buffers. Content-Length, when sent, is the exact size.
	bound := limit
	if r.ContentLength >= 0 {
		bound = r.ContentLength
	}
	req, err := h.svc.Begin(ctx, bound)
	if err != nil {
		return nil, err
	}
	defer req.Close()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if tooBig := new(http.MaxBytesError); errors.As(err, &tooBig) {
			return nil, tooLarge(limit)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, gcn.Errorf(gcn.KindInvalidArgument, "reading the request body: %v", err)
	}
	if err := req.SetWireBytes(ctx, int64(len(body))); err != nil {
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

func tooLarge(limit int64) error {
	return gcn.Errorf(gcn.KindTooLarge, "request body is larger than %d bytes (--max-request-bytes)", limit)
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
	w.Write(out)
}

func protojsonModelInfo(mi *gcnpb.ModelInfo) ([]byte, error) {
	return marshalOptions.Marshal(mi)
}

// fail answers err with serving's HTTP status and {"error": message}.
func (h *handler) fail(w http.ResponseWriter, route string, err error) {
	status, msg := serving.HTTPStatus(h.log, route, err)
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // maps of strings always marshal
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
