package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/reqlog"
)

// TestHTTPMiddleware checks the labels (route pattern, status), sizes and
// the Finished hook, through an auth-like wrapper between the middleware and
// the mux.
func TestHTTPMiddleware(t *testing.T) {
	var mu sync.Mutex
	var finished []reqlog.Request
	m := metrics.New(metrics.Options{Finished: func(r reqlog.Request) {
		mu.Lock()
		finished = append(finished, r)
		mu.Unlock()
	}})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/process-graph", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) == "bad" {
			http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
			return
		}
		io.WriteString(w, "scores")
	})
	mux.HandleFunc("GET /v2/models/{name}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.PathValue("name"))
	})
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer wrong" {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	h := m.HTTPMiddleware(mux, refuse)

	do := func(method, path, body, auth string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range []struct {
		method, path, body, auth string
		want                     int
	}{
		{"POST", "/v1/process-graph", "graph", "", 200},
		{"POST", "/v1/process-graph", "graph", "", 200},
		{"POST", "/v1/process-graph", "bad", "", 400},
		{"POST", "/v1/process-graph", "graph", "Bearer wrong", 401},
		{"GET", "/v2/models/karate", "", "", 200},
		{"GET", "/v2/models/cora", "", "", 200},
		{"GET", "/no/such/path/" + strings.Repeat("x", 20), "", "", 404},
		{"DELETE", "/v1/process-graph", "", "", 405},
	} {
		if got := do(tc.method, tc.path, tc.body, tc.auth); got != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}

	f := scrape(t, m.Handler())
	want := map[[2]string]float64{
		{"POST /v1/process-graph", "200"}: 2,
		{"POST /v1/process-graph", "400"}: 1,
		{"POST /v1/process-graph", "401"}: 1,
		{"GET /v2/models/{name}", "200"}:  2,
		{metrics.UnmatchedRoute, "404"}:   1,
		{metrics.UnmatchedRoute, "405"}:   1,
	}
	got := map[[2]string]float64{}
	for _, mt := range f["gcnserve_requests_total"].GetMetric() {
		l := labels(mt)
		if l["protocol"] != "http" {
			t.Errorf("protocol %q, want http", l["protocol"])
		}
		got[[2]string{l["method"], l["code"]}] = mt.GetCounter().GetValue()
	}
	if len(got) != len(want) {
		t.Errorf("got series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("gcnserve_requests_total{method=%q,code=%q} = %v, want %v", k[0], k[1], got[k], n)
		}
	}
	var count uint64
	for _, mt := range f["gcnserve_request_duration_seconds"].GetMetric() {
		count += mt.GetHistogram().GetSampleCount()
	}
	if count != 8 {
		t.Errorf("gcnserve_request_duration_seconds count = %d, want 8", count)
	}
	if v := gaugeValue(f, "gcnserve_requests_in_flight", map[string]string{"protocol": "http"}); v != 0 {
		t.Errorf("gcnserve_requests_in_flight{protocol=http} = %v, want 0", v)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 8 {
		t.Fatalf("Finished called %d times, want 8", len(finished))
	}
	first := finished[0]
	if !first.OK || first.RequestBytes != int64(len("graph")) || first.ResponseBytes != int64(len("scores")) || first.Peer == "" {
		t.Errorf("first request: got %+v, want OK, 5 request bytes, 6 response bytes and a peer", first)
	}
	if bad := finished[2]; bad.OK || bad.Code != "400" {
		t.Errorf("bad request: got %+v, want not OK with code 400", bad)
	}
}

// TestNilMetrics: a nil *Metrics is a valid no-op, so packages can take an
// optional one.
func TestNilMetrics(t *testing.T) {
	var m *metrics.Metrics
	m.ObservePhases("karate", metrics.Phases{}, 1, 1, 1)
	m.ModelLoaded("karate", "1", "abc")
	m.ModelUnloaded("karate", "1", "abc")
	m.ModelLoadFailed("karate")
	m.RepositoryReloaded(nil)
	m.SetAdmissionQueueLength(1)
	m.SetAdmissionBytes(1, 2)
	m.ObserveAdmissionWait(0)
	m.AdmissionRejected("timeout")
	m.AuthFailed(metrics.ProtocolHTTP, "missing")
	if m.GRPCStatsHandler() == nil {
		t.Error("nil Metrics: GRPCStatsHandler() = nil, want a no-op handler")
	}
	next := http.NotFoundHandler()
	if h := m.HTTPMiddleware(http.NewServeMux(), next); h == nil {
		t.Error("nil Metrics: HTTPMiddleware = nil, want next")
	}
}
