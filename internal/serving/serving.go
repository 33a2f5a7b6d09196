// Package serving is the one transport-independent inference path of the
// server: every transport (the tutorial gRPC service, the Open Inference
// Protocol over gRPC and REST, HTTP/JSON) decodes its request, then runs it
// through a Request of this package, then encodes. A Request admits the
// request against the memory budget, routes it to a served model version
// (holding a lease, so the version stays loaded until the request ends),
// runs the model (batched per version, inside gcn) and records the metrics.
// The one error table (GRPCStatus, HTTPStatus) is here too.
package serving

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/admission"
	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/gcpace"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
)

// Config is what a Service needs. Repository is required.
type Config struct {
	// Repository serves the model versions.
	Repository *modelrepo.Repository
	// Budget, when set, bounds the memory requests hold (admission control).
	Budget *admission.Budget
	// Metrics, when set, receives per-request phase times and sizes.
	Metrics *metrics.Metrics
	// MaxNodes and MaxEdges bound one request (0: unlimited).
	MaxNodes, MaxEdges int
	// MaxRequestBytes bounds one request message: the most bytes a request
	// can hold before it is decoded.
	MaxRequestBytes int
	// Logger receives unexpected errors. Default slog.Default().
	Logger *slog.Logger
	// Pacer, when set, holds each request's memory estimate (the sizes the
	// budget reserves) while it runs, so that the garbage collector keeps
	// the heap near them during large requests (package gcpace).
	Pacer *gcpace.Pacer
	// TensorPool, when set, holds the decoded tensors of requests (features
	// and edge index, outside the Go heap) for reuse by the next request:
	// the transports decode into it (Request.TensorPool) and give them back
	// with Request.Recycle.
	TensorPool *bufpool.Pool
}

// Service runs requests. It is safe for concurrent use.
type Service struct {
	cfg Config
}

// New returns a Service over cfg.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg}
}

// Config returns the service's configuration (limits, for model info).
func (s *Service) Config() Config { return s.cfg }

// Logger is the service's logger.
func (s *Service) Logger() *slog.Logger { return s.cfg.Logger }

// Models lists every model and version the repository knows.
func (s *Service) Models() []modelrepo.ModelState { return s.cfg.Repository.Models() }

// DefaultModel names the model that requests naming none get ("" if none).
func (s *Service) DefaultModel() string { return s.cfg.Repository.Default() }

// Acquire leases the served version of model ("" the default model) named
// by version ("" the highest served). The caller must Release the lease.
// An unknown model or version is a gcn.KindNotFound error naming what was
// asked and what is served.
func (s *Service) Acquire(model, version string) (*modelrepo.Lease, error) {
	if err := CheckModelRef(model, version); err != nil {
		return nil, err
	}
	v, err := ParseVersion(version)
	if err != nil {
		return nil, err
	}
	return s.cfg.Repository.Acquire(model, v)
}

// ParseVersion reads a version as requests give it: "" is 0 (the highest
// served), else a positive integer in strict decimal: digits only, no sign,
// no leading zero, at most 2^63-1. "+1" and "00001" are refused rather than
// read as 1, so that one version has one spelling (as in the repository's
// directory names). The error echoes at most 64 bytes of the input.
func ParseVersion(version string) (int64, error) {
	if version == "" {
		return 0, nil
	}
	strict := version[0] >= '1' && version[0] <= '9'
	for i := 1; strict && i < len(version); i++ {
		strict = version[i] >= '0' && version[i] <= '9'
	}
	v, err := strconv.ParseInt(version, 10, 64)
	if !strict || err != nil || v <= 0 {
		shown := version
		if len(shown) > 64 {
			shown = shown[:64] + fmt.Sprintf("... (%d bytes)", len(version))
		}
		return 0, gcn.Errorf(gcn.KindInvalidArgument, "model version %q is not a positive integer in plain decimal (no sign, no leading zeros)", shown)
	}
	return v, nil
}

// Request is one inference request's passage through the serving layer.
// Begin it before the request's bytes are read, Route it once the model
// name is known, Predict, Finish after encoding, and Close it on every path
// (Close is idempotent and releases the lease and the memory).
type Request struct {
	svc   *Service
	res   *admission.Reservation // nil without a budget
	hold  *gcpace.Hold           // nil without a pacer
	lease *modelrepo.Lease
	wire  int64

	begun, decoded, predicted time.Time
	pred                      gcn.Prediction
	nodes, edges              int
	// modelMayRead is set while the model may still read the tensors
	// Predict was given: during the call, and for good if it did not return
	// (a panic). Recycle gives tensors back only when it is false.
	modelMayRead bool
}

// Begin admits a request that will hold up to wireBytes of request bytes
// (the transport's bound when it cannot know the size before reading). It
// reserves DecodeBound(wireBytes): the bytes and what decoding them needs.
// It waits in the admission queue when the budget is in use, and refuses
// (gcn.KindOverloaded) when the request can never fit, the queue is full,
// or the wait outlasts the queue timeout or ctx.
func (s *Service) Begin(ctx context.Context, wireBytes int64) (*Request, error) {
	return s.begin(ctx, wireBytes, DecodeBound(wireBytes))
}

// BeginRead admits a request before its message is read, as Begin does,
// but reserves readBytes only: what reading the message holds, which the
// transport knows (gRPC: its frame buffers and the codec's copy, twice
// --max-request-bytes; three times when compressed), not what decoding it
// will need. SetWireBytes resizes the reservation to DecodeBound once the
// real size is known. So a call stalled before its bytes arrive holds less
// than Begin's 3 x --max-request-bytes, and only until the transport's
// read deadline (--request-read-timeout) cuts it off.
func (s *Service) BeginRead(ctx context.Context, readBytes int64) (*Request, error) {
	return s.begin(ctx, 0, readBytes)
}

func (s *Service) begin(ctx context.Context, wireBytes, reserve int64) (*Request, error) {
	r := &Request{svc: s, wire: wireBytes}
	if s.cfg.Budget != nil {
		res, err := s.cfg.Budget.Reserve(ctx, min(reserve, s.cfg.Budget.Bytes()))
		if err != nil {
			return nil, err
		}
		r.res = res
	}
	// The admission wait is measured by the budget, not as decode time.
	r.begun = time.Now()
	return r, nil
}

// SetWireBytes records the request's real size once it has been read and
// resizes the reservation to DecodeBound(n): the bytes are held, and
// decoding is about to allocate the tensors. Reserving them only after
// decoding (in Predict) would let every request admitted to read its bytes
// decode at once, each holding twice what the budget counts.
func (r *Request) SetWireBytes(ctx context.Context, n int64) error {
	r.wire = n
	r.pace(DecodeBound(n))
	if r.res != nil {
		return r.res.Resize(ctx, min(DecodeBound(n), r.svc.cfg.Budget.Bytes()))
	}
	return nil
}

// DecodeBound bounds the bytes a request of wireBytes holds once decoded,
// before the model runs: the message itself plus tensors and id index of at
// most twice its size (a packed float is 4 bytes on the wire and in x; an
// edge takes at least 8 bytes on the wire and 16 in edge_index).
func DecodeBound(wireBytes int64) int64 { return 3 * wireBytes }

// Route leases the model version the request names and returns its
// feature dimension: it is a graphwire.Resolver.
func (r *Request) Route(model, version string) (featureDim int, err error) {
	if r.lease != nil {
		return 0, fmt.Errorf("serving: request routed twice")
	}
	l, err := r.svc.Acquire(model, version)
	if err != nil {
		return 0, err
	}
	r.lease = l
	return l.Model.Info().FeatureDim, nil
}

// Lease is the version the request was routed to (nil before Route).
func (r *Request) Lease() *modelrepo.Lease { return r.lease }

// Info describes the routed model version.
func (r *Request) Info() gcn.Info { return r.lease.Model.Info() }

// Limits returns the per-request node and edge bounds.
func (r *Request) Limits() (maxNodes, maxEdges int) {
	return r.svc.cfg.MaxNodes, r.svc.cfg.MaxEdges
}

// Predict runs the routed model on t. Before the run it grows the memory
// reservation to the request's real cost (its bytes, tensors, outputs and
// the model's working memory, estimated), waiting for memory if need be.
func (r *Request) Predict(ctx context.Context, t gcn.Tensors) (gcn.Prediction, error) {
	if r.lease == nil {
		return gcn.Prediction{}, fmt.Errorf("serving: Predict before Route")
	}
	r.decoded = time.Now()
	info := r.lease.Model.Info()
	r.nodes, r.edges = t.NumNodes, t.NumEdges()
	if lim := r.svc.cfg.MaxNodes; lim > 0 && r.nodes > lim {
		return gcn.Prediction{}, gcn.Errorf(gcn.KindTooLarge, "request has %d nodes, limit is %d (--max-nodes)", r.nodes, lim)
	}
	if lim := r.svc.cfg.MaxEdges; lim > 0 && r.edges > lim {
		return gcn.Prediction{}, gcn.Errorf(gcn.KindTooLarge, "request has %d edges, limit is %d (--max-edges)", r.edges, lim)
	}
	cost := r.svc.costFor(info, r.wire, r.nodes, r.edges)
	if r.res != nil {
		if err := r.res.Resize(ctx, cost); err != nil {
			return gcn.Prediction{}, err
		}
	}
	r.pace(cost)
	r.modelMayRead = true
	p, err := r.lease.Model.Predict(ctx, t)
	r.modelMayRead = false
	if err != nil {
		return gcn.Prediction{}, err
	}
	r.pred = p
	r.predicted = time.Now()
	return p, nil
}

// TensorPool returns what a transport decodes the request's tensors with
// (graphwire.DecodePooled): after Route, the service's pool when the routed
// model does not batch, else nil (allocate). Whatever is taken from the
// pool goes back through Recycle.
//
// Why not when batching: mapped memory given back is reused, and unmapped
// once idle, so it must not be read after Recycle. gcn.Model.Predict without
// batching returns only after its last read of the tensors, whatever the
// context does; with batching, a cancelled call returns while the batcher
// may still run its job, and heap tensors are then kept alive by the job.
func (r *Request) TensorPool() func() *bufpool.Pool {
	return func() *bufpool.Pool {
		if r.lease == nil || r.lease.Model.Info().Batching {
			return nil
		}
		return r.svc.cfg.TensorPool
	}
}

// Recycle gives g's tensors back to the service's pool for the next
// request, unless the model may still read them (Predict did not return:
// they are then never given back, a leak preferred to memory reused under a
// reader). Call it once the response no longer needs g, and defer it right
// after decoding, so that it runs on every path; g's tensors are unusable
// afterwards.
func (r *Request) Recycle(g *graphwire.Graph) {
	if r.modelMayRead {
		return
	}
	graphwire.Recycle(g, r.svc.cfg.TensorPool)
}

// Finish records a successful request's phases once its response is
// encoded. Failed requests are counted by the transports' request metrics.
func (r *Request) Finish() {
	if r.predicted.IsZero() {
		return
	}
	m := r.svc.cfg.Metrics
	if m == nil {
		return
	}
	m.ObservePhases(r.lease.Name, metrics.Phases{
		Decode: r.decoded.Sub(r.begun),
		Queue:  r.pred.Timing.Queue,
		Run:    r.pred.Timing.Run,
		Encode: time.Since(r.predicted),
	}, r.nodes, r.edges, r.pred.Timing.BatchGraphs)
}

// Timing returns the request's phase durations so far, for debug logs.
func (r *Request) Timing() (decode, queue, run time.Duration) {
	return r.decoded.Sub(r.begun), r.pred.Timing.Queue, r.pred.Timing.Run
}

// pace holds bytes of the service's pacer for the request.
func (r *Request) pace(bytes int64) {
	if r.hold == nil {
		r.hold = r.svc.cfg.Pacer.Hold(bytes)
		return
	}
	r.hold.Resize(bytes)
}

// Close releases the lease and the memory reservation.
func (r *Request) Close() {
	r.hold.Release()
	if r.lease != nil {
		r.lease.Release()
	}
	if r.res != nil {
		r.res.Release()
	}
}

// CostFor estimates the peak memory one request of nodes and edges
// (wireBytes on the wire) costs the server on a model described by info:
// Cost when the model runs natively (info.Native), CostORT otherwise.
func CostFor(info gcn.Info, wireBytes int64, nodes, edges int) int64 {
	if info.Native {
		return Cost(wireBytes, nodes, edges, info.FeatureDim, info.NumClasses)
	}
	return CostORT(wireBytes, nodes, edges, info.FeatureDim, info.NumClasses)
}

// costFor is CostFor as this service runs: PacedCost for a native model
// when a gcpace.Pacer is configured.
func (s *Service) costFor(info gcn.Info, wireBytes int64, nodes, edges int) int64 {
	if info.Native && s.cfg.Pacer != nil {
		return PacedCost(wireBytes, nodes, edges, info.FeatureDim, info.NumClasses)
	}
	return CostFor(info, wireBytes, nodes, edges)
}

// Cost estimates the peak bytes of process memory one request adds when the
// model runs natively (gcn.Info.Native), with the server's defaults (no
// gcpace.Pacer). Its terms:
//   - pooled: the bytes the gRPC server keeps outside the Go heap
//     (bufpool): the request's HTTP/2 frames and their contiguous copy (the
//     decoded ids point into it), twice the wire bytes; the feature matrix
//     (float32 [N,F]) and the edge index (int64 [2,E]). Counted once: the
//     collector neither sees nor doubles them.
//   - live: what the request allocates on the heap: the ids and the id
//     index; the adjacency (4 bytes per edge and direction); the native
//     layers' two scratch buffers (hidden width up to 16), the degree
//     scales and the probabilities [N,C]; the outputs (scores, classes, the
//     encoded response). Scaled by gcGrowth: GOGC=100 lets the heap reach
//     twice what was live, but these are never all live at once (measured
//     1.0-1.3x on the large request).
//   - fixed: perRequest (measured on karate: heap growth and buffers of
//     serving at all), and for inputs wider than narrowFeatures one more
//     copy of the features (measured on a Cora-shaped request, 1,433 dense
//     features per node: gcn runs such wide dense inputs in ONNX Runtime,
//     which copies them into its own memory).
//
// Calibrated against peak RSS over idle, one request at a time, with the
// server's defaults, on karate, medium, Cora-shaped and large graphs, within
// 30% (docs/BENCHMARKS.md, "Large request: pooled buffers";
// TestCostCalibrated). It is an estimate: the flood test checks that peak
// RSS stays within the budget plus a fixed baseline when admission uses it.
func Cost(wireBytes int64, nodes, edges, featureDim, numClasses int) int64 {
	const gcGrowthTenths = 13 // 1.3x the live heap bytes
	pooled, live, fixed := costTerms(wireBytes, nodes, edges, featureDim, numClasses)
	return fixed + pooled + live*gcGrowthTenths/10
}

// PacedCost is Cost under a gcpace.Pacer (--gc-pace-bytes). Since the
// request's big buffers moved off the Go heap (bufpool), the pacer no longer
// lowers the peak: measured with it engaged from 32 MiB, karate 5.0, medium
// 6.3, Cora-shaped 65.0, large 84.1 MiB over idle, as without it (5.4, 6.7,
// 65.6, 80.5). So PacedCost is Cost.
func PacedCost(wireBytes int64, nodes, edges, featureDim, numClasses int) int64 {
	return Cost(wireBytes, nodes, edges, featureDim, numClasses)
}

// costTerms are Cost's pooled bytes (outside the Go heap), live bytes (on
// the heap, which the collector's headroom scales) and fixed bytes (per
// request, and ONNX Runtime's copy of wide dense inputs).
func costTerms(wireBytes int64, nodes, edges, featureDim, numClasses int) (pooled, live, fixed int64) {
	const (
		denseFeatureCopies = 1
		perRequest         = 5 << 20
		// narrowFeatures: inputs this narrow always run natively (the
		// transform is a small part of the work); wider ones may go to
		// ONNX Runtime when dense.
		narrowFeatures = 64
	)
	n, e, f, c := int64(nodes), int64(edges), int64(featureDim), int64(numClasses)
	pooled = 2*wireBytes + 4*n*f + 16*e
	ids := 48 * n
	adjacency := 8*e + 4*n
	layers := 2*4*n*16 + 4*n + 4*n*c
	outputs := 8*n + n*(32+4*c)
	live = ids + adjacency + layers + outputs
	fixed = perRequest
	if f > narrowFeatures {
		fixed += denseFeatureCopies * 4 * n * f
	}
	return pooled, live, fixed
}

// CostORT is Cost for a model ONNX Runtime runs (no "layers" metadata, or
// native execution off): ONNX Runtime's working memory for a 2-layer GCN of
// hidden width up to 16 replaces the native buffers (three live copies of
// the 64-byte messages per edge and direction, six of the 64-byte hidden
// rows per node).
func CostORT(wireBytes int64, nodes, edges, featureDim, numClasses int) int64 {
	n, e, f, c := int64(nodes), int64(edges), int64(featureDim), int64(numClasses)
	tensors := 4*n*f + 16*e + 16*n
	outputs := n*(4*c+8) + n*(32+4*c)
	work := 2*e*3*64 + n*6*64
	return wireBytes + tensors + outputs + work
}
