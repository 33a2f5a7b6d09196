package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/reqlog"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestHTTPJSONMetricsAndLogs runs the assembled server: POST
// /v1/process-graph with examples/karate.json gets gRPC's scores, a gzip
// gRPC request (the compressor is registered by this package alone: the
// test does not import it) is answered, /metrics on the HTTP listener counts
// both protocols (oversize refusals included), and failures are logged
// with durations as strings.
func TestHTTPJSONMetricsAndLogs(t *testing.T) {
	logs := &syncBuffer{}
	cfg := testConfig(t)
	cfg.MaxRequestBytes = 64 << 10 // Karate (6 KB) fits, a 2,000-node graph does not
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{ReplaceAttr: reqlog.ReplaceAttr}))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := gcnpb.NewGCNServiceClient(serve(t, s))
	hs := httptest.NewServer(s.httpHandler)
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	body, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(hs.URL+"/v1/process-graph", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/process-graph: %d %s", res.StatusCode, out)
	}
	got := new(gcnpb.GCNResult)
	if err := protojson.Unmarshal(out, got); err != nil {
		t.Fatalf("response is not a JSON GCNResult: %v", err)
	}
	req := new(gcnpb.GraphData)
	if err := protojson.Unmarshal(body, req); err != nil {
		t.Fatal(err)
	}
	want, err := client.ProcessGraph(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := client.ProcessGraph(ctx, req, grpc.UseCompressor("gzip"))
	if err != nil {
		t.Fatalf("gzip request: %v", err)
	}
	if len(want.GetNodeScores()) != 34 || len(got.GetNodeScores()) != 34 || len(gz.GetNodeScores()) != 34 {
		t.Fatalf("scores: HTTP %d, gRPC %d, gRPC gzip %d, want 34 each",
			len(got.GetNodeScores()), len(want.GetNodeScores()), len(gz.GetNodeScores()))
	}
	for id, w := range want.GetNodeScores() {
		if d := math.Abs(float64(got.GetNodeScores()[id] - w)); d > 1e-6 {
			t.Errorf("node %s: HTTP score %v, gRPC %v", id, got.GetNodeScores()[id], w)
		}
		if gz.GetNodeScores()[id] != w {
			t.Errorf("node %s: gzip score %v, plain %v", id, gz.GetNodeScores()[id], w)
		}
	}
	// One failure on each protocol.
	res, err = http.Post(hs.URL+"/v1/process-graph", "application/json", strings.NewReader(`{"nodez":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown JSON field: status %d, want 400", res.StatusCode)
	}
	bad := triangle()
	bad.Edges = append(bad.Edges, edge("a", "nope"))
	if _, err := client.ProcessGraph(ctx, bad); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown edge target: %v, want InvalidArgument", err)
	}

	// And one oversize request on each, refused before decoding.
	big := graphwire.SyntheticGraph(2000, 4000, 34, 1)
	if _, err := client.ProcessGraph(ctx, big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversize gRPC request: %v, want ResourceExhausted", err)
	}
	bigJSON, err := protojson.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	res, err = http.Post(hs.URL+"/v1/process-graph", "application/json", bytes.NewReader(bigJSON))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize HTTP request: status %d, want 413", res.StatusCode)
	}

	wantCounts := map[[3]string]float64{
		{"http", "POST /v1/process-graph", "200"}:                1,
		{"http", "POST /v1/process-graph", "400"}:                1,
		{"http", "POST /v1/process-graph", "413"}:                1,
		{"grpc", "GCNService/ProcessGraph", "ResourceExhausted"}: 1,
		{"grpc", "GCNService/ProcessGraph", "OK"}:                2,
		{"grpc", "GCNService/ProcessGraph", "InvalidArgument"}:   1,
	}
	var families map[string]*dto.MetricFamily
	counts := map[[3]string]float64{}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		res, err := http.Get(hs.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		var p expfmt.TextParser
		families, err = p.TextToMetricFamilies(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		clear(counts)
		for _, m := range families["gcnserve_requests_total"].GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			counts[[3]string{l["protocol"], l["method"], l["code"]}] = m.GetCounter().GetValue()
		}
		// Requests are counted as they end, which can follow the client's
		// return by a moment: wait until all are in.
		all := true
		for k, n := range wantCounts {
			all = all && counts[k] == n
		}
		if all || time.Now().After(deadline) {
			break
		}
	}
	for k, n := range wantCounts {
		if counts[k] != n {
			t.Errorf("gcnserve_requests_total{protocol=%q,method=%q,code=%q} = %v, want %v (all: %v)", k[0], k[1], k[2], counts[k], n, counts)
		}
	}
	// Every counted request is in the latency histogram. The scrapes
	// themselves are left out: the previous scrape is recorded after its
	// response reached us, so it may be half-recorded during this one.
	var total float64
	for k, n := range counts {
		if !strings.HasSuffix(k[1], "/metrics") {
			total += n
		}
	}
	var histCount uint64
	for _, m := range families["gcnserve_request_duration_seconds"].GetMetric() {
		scrape := false
		for _, p := range m.GetLabel() {
			scrape = scrape || (p.GetName() == "method" && strings.HasSuffix(p.GetValue(), "/metrics"))
		}
		if !scrape {
			histCount += m.GetHistogram().GetSampleCount()
		}
	}
	if float64(histCount) != total {
		t.Errorf("gcnserve_request_duration_seconds count = %d, gcnserve_requests_total = %v", histCount, total)
	}

	failures := 0
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["msg"] != "request failed" {
			continue
		}
		failures++
		if _, ok := line["duration"].(string); !ok || line["level"] != "WARN" {
			t.Errorf("failure log line %v: want WARN and a duration string", line)
		}
	}
	if failures != 4 {
		t.Errorf("logged %d failed requests, want 4:\n%s", failures, logs.String())
	}
}

// TestUnknownRouteJSON: a path no route serves gets 404 and a method a
// route does not take 405 (with Allow), both with the JSON error body every
// other HTTP error has.
func TestUnknownRouteJSON(t *testing.T) {
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, tt := range []struct {
		method, path string
		code         int
		want, allow  string
	}{
		{"GET", "/v2/nothing", 404, "GET /v2/nothing: not found", ""},
		{"DELETE", "/v1/process-graph", 405, "DELETE /v1/process-graph: method not allowed", "POST"},
	} {
		rec := httptest.NewRecorder()
		s.httpHandler.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		var body struct{ Error string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("%s %s: body %q is not JSON: %v", tt.method, tt.path, rec.Body, err)
		}
		if rec.Code != tt.code || body.Error != tt.want || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s = %d %q (%s), want %d %q (application/json)", tt.method, tt.path, rec.Code, body.Error, rec.Header().Get("Content-Type"), tt.code, tt.want)
		}
		if got := rec.Header().Get("Allow"); !strings.Contains(got, tt.allow) {
			t.Errorf("%s %s: Allow %q, want it to name %q", tt.method, tt.path, got, tt.allow)
		}
	}
	// A served route is untouched.
	rec := httptest.NewRecorder()
	s.httpHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", rec.Code, rec.Body)
	}
}
