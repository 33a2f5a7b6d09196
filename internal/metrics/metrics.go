// Package metrics holds every Prometheus metric gcnserve exports, on a
// registry of its own (no global state: tests build as many as they like).
//
// Requests are counted at the transport's edge, not in handlers: the gRPC
// stats handler (GRPCStatsHandler) sees every RPC the server dispatches,
// including those refused before any handler runs (message over the size
// limit, unsupported compression, an interceptor's auth refusal) and
// health, reflection and GetModelInfo calls; the HTTP middleware
// (HTTPMiddleware) sees every HTTP request. The inner layers report what only
// they know through small typed methods (ObservePhases, ModelLoaded,
// AdmissionRejected, AuthFailed, ...). Every method is safe on a nil
// *Metrics, which does nothing, so a package can take an optional one.
//
// The metric names and labels are listed in docs/METRICS.md.
package metrics

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gcnserve/gcnserve/internal/reqlog"
)

// Namespace prefixes every gcnserve metric.
const Namespace = "gcnserve"

// Protocol label values.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Buckets. Latencies span a Karate request (~100 us) to a large graph on a
// busy server (tens of seconds); sizes span a tiny request to the 64 MiB
// default --max-request-bytes.
var (
	latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	sizeBuckets    = prometheus.ExponentialBuckets(256, 4, 10) // 256 B .. 64 MiB
	nodeBuckets    = prometheus.ExponentialBuckets(1, 4, 11)   // 1 .. 1,048,576
	edgeBuckets    = prometheus.ExponentialBuckets(1, 4, 13)   // 1 .. 16,777,216
	batchBuckets   = prometheus.ExponentialBuckets(1, 2, 8)    // 1 .. 128 graphs
)

// Options configure New. The zero value is valid.
type Options struct {
	// Version is the gcnserve version for gcnserve_build_info. Default: the
	// main module's version from the binary's build info ("(devel)" in a
	// source build).
	Version string
	// Finished, if set, is called once at the end of every request the stats
	// handler or the middleware saw, with what they measured: the server sets
	// it to (*reqlog.Logger).Finished to log failures.
	Finished func(reqlog.Request)
}

// Metrics is the registry and every metric handle. Build it with New.
type Metrics struct {
	reg      *prometheus.Registry
	finished func(reqlog.Request)

	requests      *prometheus.CounterVec   // protocol, method, code
	duration      *prometheus.HistogramVec // protocol, method
	requestBytes  *prometheus.HistogramVec // protocol, method
	responseBytes *prometheus.HistogramVec // protocol, method
	inFlight      *prometheus.GaugeVec     // protocol

	phase      *prometheus.HistogramVec // model, phase
	batch      *prometheus.HistogramVec // model
	graphNodes *prometheus.HistogramVec // model
	graphEdges *prometheus.HistogramVec // model

	modelInfo     *prometheus.GaugeVec   // model, version, sha256
	modelLoads    *prometheus.CounterVec // model
	modelFailures *prometheus.CounterVec // model
	modelUnloads  *prometheus.CounterVec // model
	reloads       *prometheus.CounterVec // result

	queueLength  prometheus.Gauge
	queueWait    prometheus.Histogram
	rejections   *prometheus.CounterVec // reason
	admitted     prometheus.Gauge
	budget       prometheus.Gauge
	authFailures *prometheus.CounterVec // protocol, reason

	graph graphMetrics // stored graphs: graphs.go
}

// New builds the registry with the Go and process collectors, Go's build
// info (go_build_info), gcnserve_build_info and every gcnserve metric.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), finished: opts.Finished}
	f := factory{m.reg}

	m.requests = f.counterVec("requests_total",
		"Requests finished, by protocol (grpc, http), method (gRPC service/method or HTTP route) and code (gRPC code name or HTTP status). Counts requests refused before any handler runs.",
		"protocol", "method", "code")
	m.duration = f.histogramVec("request_duration_seconds",
		"Time from a request's start to its end, every request counted in gcnserve_requests_total included.",
		latencyBuckets, "protocol", "method")
	m.requestBytes = f.histogramVec("request_size_bytes",
		"Request message size (gRPC: uncompressed message; HTTP: body bytes read), for requests that had a message.",
		sizeBuckets, "protocol", "method")
	m.responseBytes = f.histogramVec("response_size_bytes",
		"Response message size (gRPC: uncompressed message; HTTP: body bytes written), for requests that sent one.",
		sizeBuckets, "protocol", "method")
	m.inFlight = f.gaugeVec("requests_in_flight", "Requests started and not yet finished.", "protocol")

	m.phase = f.histogramVec("phase_seconds",
		"Time successful inference requests spent per phase: decode (request to tensors, validation included), queue (waiting for a run slot or a batch), run (ONNX Runtime), encode (response bytes).",
		latencyBuckets, "model", "phase")
	m.batch = f.histogramVec("batch_graphs",
		"Graphs in the model run that served a successful inference request (1: it ran alone).",
		batchBuckets, "model")
	m.graphNodes = f.histogramVec("graph_nodes", "Nodes per successful inference request.", nodeBuckets, "model")
	m.graphEdges = f.histogramVec("graph_edges", "Edges per successful inference request.", edgeBuckets, "model")

	m.modelInfo = f.gaugeVec("model_info",
		"1 for each model version being served, labelled with its name, version and the sha256 of its file.",
		"model", "version", "sha256")
	m.modelLoads = f.counterVec("model_loads_total", "Model versions loaded and warmed up successfully.", "model")
	m.modelFailures = f.counterVec("model_load_failures_total", "Model versions that failed to load or warm up.", "model")
	m.modelUnloads = f.counterVec("model_unloads_total", "Model versions taken out of service.", "model")
	m.reloads = f.counterVec("model_repository_reloads_total",
		"Model repository rescans (poll or SIGHUP), by result (ok, error).", "result")

	m.queueLength = f.gauge("admission_queue_length", "Requests waiting for memory admission.")
	m.queueWait = f.histogram("admission_wait_seconds",
		"Time requests waited for memory admission, admitted or not.", latencyBuckets)
	m.rejections = f.counterVec("admission_rejections_total",
		"Requests refused by memory admission, by reason (too_large, queue_full, timeout, deadline, canceled, deadlock: internal/admission's Reason).", "reason")
	m.admitted = f.gauge("admission_in_use_bytes", "Bytes of the memory budget held by admitted requests.")
	m.budget = f.gauge("admission_budget_bytes", "The memory budget (--max-inflight-bytes).")
	m.authFailures = f.counterVec("auth_failures_total",
		"Requests refused for a missing or wrong bearer token, by protocol and reason.", "protocol", "reason")

	version, revision := buildVersion(opts.Version)
	build := f.gaugeVec("build_info",
		"1, labelled with the gcnserve version, VCS revision and Go version it was built with.",
		"version", "revision", "goversion")
	build.WithLabelValues(version, revision, goVersion()).Set(1)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	m.graph = newGraphMetrics(f)
	return m
}

// Registry returns the registry, for a caller that wants to add its own
// collectors or gather in a test.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format (text, or
// OpenMetrics when the scraper asks for it). Mount it at /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg, // counts its own errors in promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// Phases is where a successful inference request's time went.
type Phases struct {
	// Decode is request bytes to tensors, validation included.
	Decode time.Duration
	// Queue is waiting for a run slot or for a batch to fill.
	Queue time.Duration
	// Run is the ONNX Runtime run.
	Run time.Duration
	// Encode is building the response.
	Encode time.Duration
}

// ObservePhases records one successful inference request of model: its
// phase times, its graph size and the number of graphs in its model run
// (batchGraphs <= 1: it ran alone). serving calls it once per request, so
// every phase histogram counts the same requests.
func (m *Metrics) ObservePhases(model string, p Phases, nodes, edges, batchGraphs int) {
	if m == nil {
		return
	}
	m.phase.WithLabelValues(model, "decode").Observe(p.Decode.Seconds())
	m.phase.WithLabelValues(model, "queue").Observe(p.Queue.Seconds())
	m.phase.WithLabelValues(model, "run").Observe(p.Run.Seconds())
	m.phase.WithLabelValues(model, "encode").Observe(p.Encode.Seconds())
	m.graphNodes.WithLabelValues(model).Observe(float64(nodes))
	m.graphEdges.WithLabelValues(model).Observe(float64(edges))
	m.batch.WithLabelValues(model).Observe(float64(max(batchGraphs, 1)))
}

// ModelLoaded records that version of model (its file's sha256) loaded,
// warmed up and is now served: gcnserve_model_info gets a series for it.
func (m *Metrics) ModelLoaded(model, version, sha256 string) {
	if m == nil {
		return
	}
	m.modelLoads.WithLabelValues(model).Inc()
	m.modelInfo.WithLabelValues(model, version, sha256).Set(1)
}

// ModelUnloaded records that version of model is no longer served (removed,
// replaced by policy, or the server is stopping); its gcnserve_model_info
// series goes away.
func (m *Metrics) ModelUnloaded(model, version, sha256 string) {
	if m == nil {
		return
	}
	m.modelUnloads.WithLabelValues(model).Inc()
	m.modelInfo.DeleteLabelValues(model, version, sha256)
}

// ModelLoadFailed records that a version of model failed to load or warm up.
func (m *Metrics) ModelLoadFailed(model string) {
	if m == nil {
		return
	}
	m.modelFailures.WithLabelValues(model).Inc()
}

// RepositoryReloaded records one rescan of the model repository; err is
// what it returned (nil: ok).
func (m *Metrics) RepositoryReloaded(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// SetAdmissionQueueLength sets the number of requests waiting for admission.
func (m *Metrics) SetAdmissionQueueLength(n int) {
	if m == nil {
		return
	}
	m.queueLength.Set(float64(n))
}

// SetAdmissionBytes sets the bytes held by admitted requests and the
// budget they share.
func (m *Metrics) SetAdmissionBytes(inUse, budget int64) {
	if m == nil {
		return
	}
	m.admitted.Set(float64(inUse))
	m.budget.Set(float64(budget))
}

// ObserveAdmissionWait records how long one request waited for admission
// (0 when admitted at once), whether it was admitted or not.
func (m *Metrics) ObserveAdmissionWait(d time.Duration) {
	if m == nil {
		return
	}
	m.queueWait.Observe(d.Seconds())
}

// AdmissionRejected counts one refused request; reason is an
// admission.Reason.
func (m *Metrics) AdmissionRejected(reason string) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(reason).Inc()
}

// AuthFailed counts one request refused by the bearer-token check;
// protocol is ProtocolGRPC or ProtocolHTTP, reason a short fixed word such
// as "missing" or "invalid" (never the token).
func (m *Metrics) AuthFailed(protocol, reason string) {
	if m == nil {
		return
	}
	m.authFailures.WithLabelValues(protocol, reason).Inc()
}

// finish records one finished request of either protocol.
func (m *Metrics) finish(r reqlog.Request) {
	m.requests.WithLabelValues(r.Protocol, r.Method, r.Code).Inc()
	m.duration.WithLabelValues(r.Protocol, r.Method).Observe(r.Duration.Seconds())
	if r.RequestBytes > 0 {
		m.requestBytes.WithLabelValues(r.Protocol, r.Method).Observe(float64(r.RequestBytes))
	}
	if r.ResponseBytes > 0 {
		m.responseBytes.WithLabelValues(r.Protocol, r.Method).Observe(float64(r.ResponseBytes))
	}
	if m.finished != nil {
		m.finished(r)
	}
}

// buildVersion returns the version for gcnserve_build_info and the VCS
// revision from the binary's build info ("unknown" when not stamped, e.g.
// built with -buildvcs=false).
func buildVersion(version string) (string, string) {
	revision := "unknown"
	info, ok := debug.ReadBuildInfo()
	if ok {
		if version == "" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
				if len(revision) > 12 {
					revision = revision[:12]
				}
			}
		}
	}
	if version == "" {
		version = "unknown"
	}
	return version, revision
}

func goVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return info.GoVersion
	}
	return "unknown"
}

// factory registers gcnserve metrics on one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

// httpCode is the code label of an HTTP status.
func httpCode(status int) string { return strconv.Itoa(status) }
