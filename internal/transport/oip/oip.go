// Package oip serves the Open Inference Protocol v2 (the KServe v2 / Triton
// protocol) for GCN models: the inference.GRPCInferenceService gRPC service
// (Register) and its REST form on an http.ServeMux (Routes).
//
// The transport only decodes, calls the serving layer and encodes: a request's
// tensors become one Tensors value, the Backend runs it, and the Prediction
// becomes output tensors. How a GCN maps onto the protocol's tensors:
//
//	input  "x"             FP32           [N, F]  node features, row-major
//	input  "edge_index"    INT64 or INT32 [2, E]  row 0 sources, row 1 targets, node indices in [0, N)
//	output "scores"        FP32           [N]     each node's score (GCNResult.node_scores)
//	output "probabilities" FP32           [N, C]  class probabilities, rows sum to 1
//	output "predictions"   INT64          [N]     each node's top class
//
// Bad input (shape, datatype, out-of-range index, NaN or Inf, an input the
// model does not take) is INVALID_ARGUMENT (HTTP 400) with a message naming
// the tensor; every other error goes through the serving layer's one table.
package oip

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// Tensor names of the protocol mapping (see the package comment).
const (
	InputFeatures       = "x"
	InputEdgeIndex      = "edge_index"
	InputEdgeWeight     = "edge_weight"
	OutputScores        = "scores"
	OutputProbabilities = "probabilities"
	OutputPredictions   = "predictions"
)

type (
	// Tensors is one model input.
	Tensors = gcn.Tensors
	// Prediction is one model answer.
	Prediction = gcn.Prediction
	// Info describes a model.
	Info = gcn.Info
)

// Platform is the model platform ModelMetadata reports.
const Platform = "onnxruntime_onnx"

// Backend is what the transport needs from the serving layer;
// ServingBackend adapts *serving.Service. Its methods are safe for
// concurrent use.
type Backend interface {
	// Begin admits one inference request that will hold up to wireBytes of
	// request bytes, before they are read (memory admission). The caller
	// Closes the Request on every path.
	Begin(ctx context.Context, wireBytes int64) (Request, error)
	// Acquire leases a model version for metadata and readiness: model ""
	// is the default model, version "" its highest served version. The
	// caller calls Release. A model or version not served is a NotFound
	// error naming what is.
	Acquire(model, version string) (Model, error)
	// Versions lists the served versions of model, ascending.
	Versions(model string) []string
	// Ready reports whether the server is ready for inference.
	Ready() bool
	// Limits are the per-request bounds the transport checks while it
	// decodes, before it allocates for what a request declares.
	Limits() Limits
}

// Limits bound one request; 0 means unlimited.
type Limits struct {
	// MaxNodes and MaxEdges are --max-nodes and --max-edges.
	MaxNodes, MaxEdges int
	// Budget is the whole memory budget (--max-inflight-bytes): a request
	// whose decoded size is larger can never be admitted.
	Budget int64
}

// Request is one inference request's passage through the serving layer
// (serving.Request): SetWireBytes once the request is read, Route to a
// model version, Predict, Finish after encoding, Close on every path.
type Request interface {
	SetWireBytes(ctx context.Context, n int64) error
	// Route leases the model version the request names; the lease lasts
	// until Close (the Model's Release is a no-op).
	Route(model, version string) (Model, error)
	Predict(ctx context.Context, t Tensors) (Prediction, error)
	Finish()
	Close()
}

// Model is one leased model version.
type Model interface {
	// Name and Version identify the leased version.
	Name() string
	Version() string
	// Info describes the model.
	Info() Info
	// Release ends the lease.
	Release()
}

// Options configure a Server. The zero value is valid; each field states its
// default.
type Options struct {
	// ServerName and ServerVersion are what ServerMetadata reports.
	// Defaults "gcnserve" and the main module's version from the build
	// information ("dev" for a development build).
	ServerName, ServerVersion string
	// MaxRequestBytes bounds one request: a REST body bigger than this is
	// refused with 413 (the gRPC server enforces its own limit), and it is
	// what admission reserves for a gRPC request before it is read.
	// Default 64 MiB, the server's --max-request-bytes default.
	MaxRequestBytes int64
	// Logger receives the detail of internal errors. Default slog.Default().
	Logger *slog.Logger
}

// DefaultMaxRequestBytes is Options.MaxRequestBytes's default.
const DefaultMaxRequestBytes = httpx.DefaultMaxRequestBytes

// Server answers the Open Inference Protocol over gRPC and REST.
type Server struct {
	backend Backend
	opts    Options
	log     *slog.Logger
}

// New returns a Server that runs requests on backend.
func New(backend Backend, opts Options) *Server {
	if opts.ServerName == "" {
		opts.ServerName = "gcnserve"
	}
	if opts.ServerVersion == "" {
		opts.ServerVersion = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			opts.ServerVersion = bi.Main.Version
		}
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{backend: backend, opts: opts, log: opts.Logger}
}
