package gcn

import (
	"os"
	"runtime"
	"time"

	"github.com/gcnserve/gcnserve/internal/ortlib"
)

// Option configures Open and OpenBytes. Each option's comment states its
// default.
type Option func(*options)

type options struct {
	libraryPath       string
	intraOpThreads    int
	interOpThreads    int
	maxConcurrentRuns int
	batching          bool
	batch             BatchOptions
	limits            Limits
	native            bool
	nativeWorkers     int
	cpuMemArena       bool
	scratchBytes      int64
}

func defaultOptions() options {
	lib := os.Getenv("GCNSERVE_ORT_LIB")
	if lib == "" {
		lib = ortlib.SystemName
		if p := ortlib.CachePath(); p != "" {
			if _, err := os.Stat(p); err == nil {
				lib = p // what 'make ort' (scripts/fetch_ort.sh) installs
			}
		}
	}
	return options{
		libraryPath:       lib,
		intraOpThreads:    1,
		interOpThreads:    1,
		maxConcurrentRuns: runtime.NumCPU(),
		batch:             DefaultBatchOptions(),
		native:            true,
		cpuMemArena:       true,
		scratchBytes:      DefaultScratchBytes,
	}
}

// WithLibraryPath sets the ONNX Runtime shared library. Default:
// $GCNSERVE_ORT_LIB, else the per-user copy scripts/fetch_ort.sh installs
// (${XDG_CACHE_HOME:-~/.cache}/gcnserve/ort/<version>/libonnxruntime.so) when
// it exists, else "libonnxruntime.so" found by the dynamic loader's search path. The first model a process opens loads the library and
// creates the ONNX Runtime environment, which then lives as long as the
// process (creating and destroying it repeatedly grows memory); a later
// Open naming a different library fails.
func WithLibraryPath(path string) Option {
	return func(o *options) {
		if path != "" {
			o.libraryPath = path
		}
	}
}

// WithIntraOpThreads sets ONNX Runtime's thread count inside one run.
// Default 1: concurrent requests on their own goroutines use the cores
// better than splitting each small run (onnxruntime issue 16304). A model
// whose metadata sets "max_intra_op_threads" gets at most that many: ORT's
// ScatterND(reduction=add) kernel races with more than one (onnxruntime
// issue 18048). Info.IntraOpThreads reports what the session uses.
func WithIntraOpThreads(n int) Option {
	return func(o *options) { o.intraOpThreads = max(n, 1) }
}

// WithMaxConcurrentRuns bounds model runs in flight; further Predict calls
// wait, honouring their context. It bounds the memory that concurrent big
// graphs take. Default runtime.NumCPU().
func WithMaxConcurrentRuns(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxConcurrentRuns = n
		}
	}
}

// WithBatching turns on dynamic batching: concurrent small graphs are
// merged into one model run (their disjoint union), for models whose
// metadata declares "batchable"; others run unbatched (Info.Batching says
// which). A graph alone in the model never waits. Default off; zero fields
// of b take DefaultBatchOptions' values.
func WithBatching(b BatchOptions) Option {
	return func(o *options) {
		o.batching = true
		o.batch = b.withDefaults()
	}
}

// WithNativeExecution turns the native path on or off. On (the default), a
// model whose metadata describes its layers ("layers", written by
// scripts/export_onnx.py unless --portable) and whose description computes
// the ONNX graph's probabilities on a probe graph at load runs its message
// passing in Go: CSR aggregation over both cores on large graphs, without
// ONNX Runtime's per-edge message tensors. Off, ONNX Runtime runs every
// model; Model.Network still returns the checked description.
func WithNativeExecution(on bool) Option {
	return func(o *options) { o.native = on }
}

// WithNativeWorkers bounds the goroutines one native run uses. Default 0:
// chosen by graph size, one for small graphs (they gain more from running
// side by side, or batched), up to GOMAXPROCS for large ones. Results are
// the same bit for bit for every value.
func WithNativeWorkers(n int) Option {
	return func(o *options) { o.nativeWorkers = max(n, 0) }
}

// WithScratchBytes bounds the working memory the native path keeps between
// requests (the adjacency, per-node scales and transformed rows of a pass,
// and PredictGraph's tensors and id index; not the Prediction, which is the
// caller's). Default DefaultScratchBytes (64 MiB). The big buffers (16 KiB
// and up) are memory mapped outside the Go heap and reused by power-of-two
// size class, so the garbage collector neither scans them nor lets the heap
// grow by their size; the rest stays on the heap. Each kind is kept up to n
// idle: a buffer that would take it over is released at once (so a single
// huge request never pins its memory), and anything unused for 5 s is
// released (a mapped buffer is returned to the OS then). A large request
// (100k nodes, 500k edges, hidden 16) then allocates little beyond its
// Prediction. 0 keeps nothing: every pass allocates afresh on the heap.
func WithScratchBytes(n int64) Option {
	return func(o *options) { o.scratchBytes = max(n, 0) }
}

// WithCPUMemArena turns ONNX Runtime's CPU memory arena on or off for the
// model's session. Default on (ORT's default). Measured in process
// (bench/ortarena, docs/BENCHMARKS.md "ONNX Runtime's arena"): on the large
// graph run by ORT the arena kept 212 MB resident afterwards, 33 MB without
// it, but runs took 1.6x longer without it; on a Cora-shaped dense request
// (what ORT runs when the native path is on) both cost +17 MB and no arena
// was 2.6x slower. Large graphs run natively, so the arena stays on; turn it
// off for models without "layers" that serve huge graphs.
func WithCPUMemArena(on bool) Option {
	return func(o *options) { o.cpuMemArena = on }
}

// WithLimits bounds the graphs Predict accepts. Default: no bound beyond
// memory.
func WithLimits(l Limits) Option {
	return func(o *options) { o.limits = l }
}

// Limits bound one graph. Zero (or negative) means unlimited.
type Limits struct {
	MaxNodes, MaxEdges int
}

// BatchOptions bound a merged batch. The zero value of a field means its
// default (DefaultBatchOptions).
type BatchOptions struct {
	// MaxNodes and MaxEdges bound one merged batch; a graph larger than
	// either runs alone. Defaults 4,096 nodes and 32,768 edges.
	MaxNodes, MaxEdges int
	// MaxDelay is how long the first graph of a batch may wait for company.
	// Default 200µs.
	MaxDelay time.Duration
	// Workers is how many batches run at once. Default runtime.NumCPU().
	Workers int
}

// DefaultBatchOptions returns the documented defaults: batches of at most
// 4,096 nodes and 32,768 edges, 200µs delay, one worker per CPU. On
// karate-sized graphs at concurrency 64 they cut server CPU per request by
// 1.3-1.6x (docs/BENCHMARKS.md).
func DefaultBatchOptions() BatchOptions {
	return BatchOptions{MaxNodes: 4096, MaxEdges: 32768, MaxDelay: 200 * time.Microsecond, Workers: runtime.NumCPU()}
}

func (b BatchOptions) withDefaults() BatchOptions {
	d := DefaultBatchOptions()
	if b.MaxNodes <= 0 {
		b.MaxNodes = d.MaxNodes
	}
	if b.MaxEdges <= 0 {
		b.MaxEdges = d.MaxEdges
	}
	if b.MaxDelay <= 0 {
		b.MaxDelay = d.MaxDelay
	}
	if b.Workers <= 0 {
		b.Workers = d.Workers
	}
	return b
}
