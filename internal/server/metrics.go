package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// metrics counts ProcessGraph requests and where their time went, for the
// Prometheus text format on the debug listener. Counters only: rates and
// means come from the scraper (sum / count).
type metrics struct {
	inFlight atomic.Int64
	nodes    atomic.Int64
	edges    atomic.Int64
	// Seconds spent per phase, in nanoseconds.
	decodeNanos, queueNanos, runNanos, encodeNanos atomic.Int64
	batchedGraphs                                  atomic.Int64

	mu     sync.Mutex
	byCode map[codes.Code]int64 // finished requests per status code; guarded by mu
}

func newMetrics() *metrics { return &metrics{byCode: map[codes.Code]int64{}} }

func (m *metrics) finish(code codes.Code) {
	m.mu.Lock()
	m.byCode[code]++
	m.mu.Unlock()
}

func (m *metrics) observe(nodes, edges int, decode, queue, run, encode time.Duration, batchGraphs int) {
	m.nodes.Add(int64(nodes))
	m.edges.Add(int64(edges))
	m.decodeNanos.Add(int64(decode))
	m.queueNanos.Add(int64(queue))
	m.runNanos.Add(int64(run))
	m.encodeNanos.Add(int64(encode))
	if batchGraphs > 1 {
		m.batchedGraphs.Add(1)
	}
}

// ServeHTTP writes the metrics in the Prometheus text exposition format.
func (m *metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	m.mu.Lock()
	type row struct {
		code string
		n    int64
	}
	rows := make([]row, 0, len(m.byCode))
	for c, n := range m.byCode {
		rows = append(rows, row{c.String(), n})
	}
	m.mu.Unlock()
	sort.Slice(rows, func(i, j int) bool { return rows[i].code < rows[j].code })

	fmt.Fprintln(w, "# HELP gcnserve_requests_total ProcessGraph requests finished, by gRPC status code.")
	fmt.Fprintln(w, "# TYPE gcnserve_requests_total counter")
	for _, r := range rows {
		fmt.Fprintf(w, "gcnserve_requests_total{code=%q} %d\n", r.code, r.n)
	}
	fmt.Fprintln(w, "# HELP gcnserve_requests_in_flight ProcessGraph requests being handled.")
	fmt.Fprintln(w, "# TYPE gcnserve_requests_in_flight gauge")
	fmt.Fprintf(w, "gcnserve_requests_in_flight %d\n", m.inFlight.Load())
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("gcnserve_nodes_total", "Nodes in successful requests.", m.nodes.Load())
	counter("gcnserve_edges_total", "Edges in successful requests.", m.edges.Load())
	counter("gcnserve_batched_requests_total", "Successful requests that shared a model run with others.", m.batchedGraphs.Load())
	fmt.Fprintln(w, "# HELP gcnserve_phase_seconds_total Time successful requests spent per phase: decode (wire bytes to tensors, validation included), queue (waiting for a run slot or batch), run (ONNX Runtime), encode (response bytes).")
	fmt.Fprintln(w, "# TYPE gcnserve_phase_seconds_total counter")
	for _, p := range []struct {
		name string
		v    *atomic.Int64
	}{{"decode", &m.decodeNanos}, {"queue", &m.queueNanos}, {"run", &m.runNanos}, {"encode", &m.encodeNanos}} {
		fmt.Fprintf(w, "gcnserve_phase_seconds_total{phase=%q} %.9f\n", p.name, time.Duration(p.v.Load()).Seconds())
	}
}

// debugHandler serves /metrics and the Go profiler under /debug/pprof/.
func debugHandler(m *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
