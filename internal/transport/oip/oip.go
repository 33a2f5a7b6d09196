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

// Platform is the model platform ModelMetadata reports.
const Platform = "onnxruntime_onnx"

// Backend is what the transport needs from the serving layer
// (*serving.Service, through ServingBackend). Its methods are safe for
// concurrent use.
type Backend interface {
	// Acquire leases a model version: model "" is the default model,
	// version "" its highest served version. The caller calls Release. A
	// model or version not served is a NotFound error naming what is.
	Acquire(model, version string) (Model, error)
	// Admit reserves bytes of memory for one request, waiting in the
	// admission queue; release returns them.
	Admit(ctx context.Context, bytes int64) (release func(), err error)
	// Versions lists the served versions of model, ascending.
	Versions(model string) []string
	// Ready reports whether the server is ready for inference (its default
	// model is served).
	Ready() bool
}

// Model is one leased model version.
type Model interface {
	// Name and Version identify the leased version.
	Name() string
	Version() string
	// Info describes the model.
	Info() Info
	// Predict runs the model (with the serving layer's batching, limits
	// and metrics).
	Predict(ctx context.Context, t Tensors) (Prediction, error)
	// Release ends the lease.
	Release()
}

// Options configure a Server. The zero value is valid; each field states its
// default.
type Options struct {
	// ServerName and ServerVersion are what ServerMetadata reports.
	// Defaults "gcnserve" and "dev".
	ServerName, ServerVersion string
	// MaxRequestBytes bounds a REST request body; a bigger one is refused
	// with 413. Default 64 MiB (the gRPC limit is the gRPC server's).
	MaxRequestBytes int64
	// Logger receives the detail of internal errors. Default slog.Default().
	Logger *slog.Logger
}

// DefaultMaxRequestBytes is Options.MaxRequestBytes's default.
const DefaultMaxRequestBytes = 64 << 20

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
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{backend: backend, opts: opts, log: opts.Logger}
}
