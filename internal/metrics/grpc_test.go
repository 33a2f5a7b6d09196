package metrics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/reqlog"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

const (
	processGraph = "GCNService/ProcessGraph"
	getModelInfo = "GCNService/GetModelInfo"
	healthCheck  = "grpc.health.v1.Health/Check"
	// maxRequestBytes is the test server's grpc.MaxRecvMsgSize: Karate
	// (about 6 KB on the wire) fits, a 2,000-node graph does not.
	maxRequestBytes = 32 << 10
	stallKey        = "x-test-stall"
)

// modelService is GCNService over the real bundled Karate model, in the
// test so this package's test does not depend on the transports: it does
// what a transport does (decode, predict, encode) and reports phases.
type modelService struct {
	gcnpb.UnimplementedGCNServiceServer
	model *gcn.Model
	m     *metrics.Metrics
}

func (s *modelService) ProcessGraph(ctx context.Context, req *gcnpb.GraphData) (*gcnpb.GCNResult, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(stallKey)) > 0 {
		// A handler that notices the client went away and calls it
		// Canceled: the stats handler must still count the deadline.
		<-ctx.Done()
		return nil, status.Error(codes.Canceled, "request canceled")
	}
	start := time.Now()
	info := s.model.Info()
	g, err := graphwire.FromMessage(req, info.FeatureDim, graphwire.Limits{})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	decoded := time.Now()
	pred, err := s.model.Predict(ctx, gcn.Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex})
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	encodeStart := time.Now()
	res := &gcnpb.GCNResult{NodeScores: make(map[string]float32, g.NumNodes())}
	for i, id := range g.IDs {
		res.NodeScores[id] = pred.Scores[i]
	}
	s.m.ObservePhases(info.Name, metrics.Phases{
		Decode: decoded.Sub(start), Queue: pred.Timing.Queue, Run: pred.Timing.Run, Encode: time.Since(encodeStart),
	}, g.NumNodes(), g.NumEdges(), pred.Timing.BatchGraphs)
	return res, nil
}

func (s *modelService) GetModelInfo(context.Context, *gcnpb.ModelInfoRequest) (*gcnpb.ModelInfo, error) {
	info := s.model.Info()
	return &gcnpb.ModelInfo{Name: info.Name, Version: info.Version, FeatureDim: int32(info.FeatureDim)}, nil
}

// refuseBadToken is a stand-in for internal/auth: an interceptor refusal
// happens before the handler, and must be counted all the same.
func refuseBadToken(m *metrics.Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 && md.Get("authorization")[0] != "Bearer good" {
			m.AuthFailed(metrics.ProtocolGRPC, "invalid")
			return nil, status.Error(codes.Unauthenticated, "invalid bearer token")
		}
		return h(ctx, req)
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is the real model behind a gRPC server with the stats handler.
type testServer struct {
	m    *metrics.Metrics
	conn *grpc.ClientConn
	lis  *bufconn.Listener
	logs *syncBuffer
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	model, err := gcn.Open(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"),
		gcn.WithLibraryPath(testenv.ORTLibrary(t)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{ReplaceAttr: reqlog.ReplaceAttr}))
	m := metrics.New(metrics.Options{Version: "test", Finished: reqlog.New(log, reqlog.Options{}).Finished})
	info := model.Info()
	m.ModelLoaded(info.Name, info.Version, info.SHA256)

	srv := grpc.NewServer(
		grpc.StatsHandler(m.GRPCStatsHandler()),
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.ChainUnaryInterceptor(refuseBadToken(m)),
	)
	gcnpb.RegisterGCNServiceServer(srv, &modelService{model: model, m: m})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	ts := &testServer{m: m, lis: lis, logs: logs}
	ts.conn = ts.dial(t)
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := model.Close(); err != nil {
			t.Errorf("model.Close: %v", err)
		}
	})
	return ts
}

func (ts *testServer) dial(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ts.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// karate is the tutorial's example request.
func karate(t *testing.T) *gcnpb.GraphData {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	g := new(gcnpb.GraphData)
	if err := protojson.Unmarshal(b, g); err != nil {
		t.Fatal(err)
	}
	return g
}

// unknownCompressor is a client-side compressor the server has never heard
// of (the legacy grpc.WithCompressor API does not register it globally, so
// the in-process server still lacks it).
type unknownCompressor struct{}

func (unknownCompressor) Do(w io.Writer, p []byte) error { _, err := w.Write(p); return err }
func (unknownCompressor) Type() string                   { return "x-test-unknown" }

// responseEncoding records the grpc-encoding of responses a client got.
type responseEncoding struct {
	mu   sync.Mutex
	seen []string
}

func (r *responseEncoding) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (r *responseEncoding) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok && h.IsClient() {
		r.mu.Lock()
		r.seen = append(r.seen, h.Compression)
		r.mu.Unlock()
	}
}
func (r *responseEncoding) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (r *responseEncoding) HandleConn(context.Context, stats.ConnStats) {}

// TestRequestsCountedByCode sends a mix of requests, some refused before any
// handler runs, and checks what a Prometheus scrape of /metrics shows.
func TestRequestsCountedByCode(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := gcnpb.NewGCNServiceClient(ts.conn)
	g := karate(t)

	wantCode := func(what string, err error, want codes.Code) {
		t.Helper()
		if got := status.Code(err); got != want {
			t.Errorf("%s: got code %v (%v), want %v", what, got, err, want)
		}
	}
	// 3 OK.
	for range 3 {
		res, err := client.ProcessGraph(ctx, g)
		wantCode("karate", err, codes.OK)
		if err == nil && len(res.GetNodeScores()) != 34 {
			t.Errorf("karate: got %d scores, want 34", len(res.GetNodeScores()))
		}
	}
	// 2 OK with gzip, answered with gzip.
	enc := &responseEncoding{}
	gzipClient := gcnpb.NewGCNServiceClient(ts.dial(t, grpc.WithStatsHandler(enc)))
	for range 2 {
		res, err := gzipClient.ProcessGraph(ctx, g, grpc.UseCompressor(gzip.Name))
		wantCode("karate gzip", err, codes.OK)
		if err == nil && len(res.GetNodeScores()) != 34 {
			t.Errorf("karate gzip: got %d scores, want 34", len(res.GetNodeScores()))
		}
	}
	enc.mu.Lock()
	if len(enc.seen) != 2 || enc.seen[0] != "gzip" || enc.seen[1] != "gzip" {
		t.Errorf("gzip requests were answered with grpc-encoding %q, want gzip both times", enc.seen)
	}
	enc.mu.Unlock()
	// 2 invalid: an edge to a node that does not exist.
	bad := karate(t)
	bad.Edges = append(bad.Edges, &gcnpb.Edge{SourceId: "0", TargetId: "nope"})
	for range 2 {
		_, err := client.ProcessGraph(ctx, bad)
		wantCode("unknown edge target", err, codes.InvalidArgument)
	}
	// 1 oversize: refused while reading the message.
	_, err := client.ProcessGraph(ctx, graphwire.SyntheticGraph(2000, 4000, 34, 1))
	wantCode("oversize", err, codes.ResourceExhausted)
	// 1 deadline exceeded, which the handler reports as Canceled.
	stallCtx, stallCancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, stallKey, "1"), 100*time.Millisecond)
	_, err = client.ProcessGraph(stallCtx, g)
	stallCancel()
	wantCode("stalled", err, codes.DeadlineExceeded)
	// 1 unsupported compression: refused before the message is read.
	//lint:ignore SA1019 the legacy API is the way to send an encoding the process has not registered
	odd := gcnpb.NewGCNServiceClient(ts.dial(t, grpc.WithCompressor(unknownCompressor{})))
	_, err = odd.ProcessGraph(ctx, g)
	wantCode("unknown grpc-encoding", err, codes.Unimplemented)
	// 1 refused by the auth interceptor.
	_, err = client.ProcessGraph(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong"), g)
	wantCode("bad token", err, codes.Unauthenticated)
	// Health and GetModelInfo are requests too.
	_, err = healthpb.NewHealthClient(ts.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	wantCode("health", err, codes.OK)
	_, err = client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{})
	wantCode("model info", err, codes.OK)

	want := map[[2]string]float64{
		{processGraph, "OK"}:                5,
		{processGraph, "InvalidArgument"}:   2,
		{processGraph, "ResourceExhausted"}: 1,
		{processGraph, "DeadlineExceeded"}:  1,
		{processGraph, "Unimplemented"}:     1,
		{processGraph, "Unauthenticated"}:   1,
		{healthCheck, "OK"}:                 1,
		{getModelInfo, "OK"}:                1,
	}
	var total float64
	for _, n := range want {
		total += n
	}
	// gRPC sends the status before the stats handler's End runs: wait for
	// the last End (its counter and its histogram sample: a scrape can fall
	// between the two), then check exact values.
	families := scrapeUntil(t, ts.m.Handler(), func(f map[string]*dto.MetricFamily) bool {
		return sumCounter(f["gcnserve_requests_total"]) >= total &&
			float64(sumSamples(f["gcnserve_request_duration_seconds"])) >= total
	})

	got := map[[2]string]float64{}
	for _, mt := range families["gcnserve_requests_total"].GetMetric() {
		l := labels(mt)
		if l["protocol"] != "grpc" {
			t.Errorf("gcnserve_requests_total %v: protocol %q, want grpc", l, l["protocol"])
		}
		got[[2]string{l["method"], l["code"]}] += mt.GetCounter().GetValue()
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("gcnserve_requests_total{method=%q,code=%q} = %v, want %v", k[0], k[1], got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected gcnserve_requests_total{method=%q,code=%q} = %v", k[0], k[1], n)
		}
	}

	// The latency histogram counts every request, per method as in total.
	perMethod := map[string]float64{}
	for k, n := range want {
		perMethod[k[0]] += n
	}
	var histTotal uint64
	for _, mt := range families["gcnserve_request_duration_seconds"].GetMetric() {
		h := mt.GetHistogram()
		method := labels(mt)["method"]
		histTotal += h.GetSampleCount()
		if float64(h.GetSampleCount()) != perMethod[method] {
			t.Errorf("gcnserve_request_duration_seconds{method=%q} count = %d, want %v", method, h.GetSampleCount(), perMethod[method])
		}
		if n := len(h.GetBucket()); n < 10 {
			t.Errorf("gcnserve_request_duration_seconds has %d buckets, want a real histogram", n)
		}
	}
	if float64(histTotal) != total {
		t.Errorf("gcnserve_request_duration_seconds count = %d, want %v (= gcnserve_requests_total)", histTotal, total)
	}
	// The stalled request took at least its deadline.
	if stalled := durationSum(families, processGraph); stalled < 0.09 {
		t.Errorf("ProcessGraph durations sum to %vs, want at least most of the stalled request's 0.1s deadline", stalled)
	}

	if v := gaugeValue(families, "gcnserve_requests_in_flight", map[string]string{"protocol": "grpc"}); v != 0 {
		t.Errorf("gcnserve_requests_in_flight{protocol=grpc} = %v after every request ended, want 0", v)
	}
	// Phases: one observation per successful ProcessGraph, per phase.
	for _, mt := range families["gcnserve_phase_seconds"].GetMetric() {
		if c := mt.GetHistogram().GetSampleCount(); c != 5 {
			t.Errorf("gcnserve_phase_seconds%v count = %d, want 5", labels(mt), c)
		}
	}
	if n := len(families["gcnserve_phase_seconds"].GetMetric()); n != 4 {
		t.Errorf("gcnserve_phase_seconds has %d series, want 4 (decode, queue, run, encode)", n)
	}
	for _, name := range []string{"gcnserve_graph_nodes", "gcnserve_graph_edges", "gcnserve_batch_graphs"} {
		h := families[name].GetMetric()
		if len(h) != 1 || h[0].GetHistogram().GetSampleCount() != 5 {
			t.Errorf("%s: want one series with 5 observations, got %v", name, h)
		} else if name == "gcnserve_graph_nodes" && h[0].GetHistogram().GetSampleSum() != 5*34 {
			t.Errorf("gcnserve_graph_nodes sum = %v, want 5*34", h[0].GetHistogram().GetSampleSum())
		}
	}
	// Request sizes: only requests whose message was read (not the
	// oversize, unsupported-compression one).
	for _, mt := range families["gcnserve_request_size_bytes"].GetMetric() {
		if labels(mt)["method"] == processGraph {
			if c := mt.GetHistogram().GetSampleCount(); c != 9 {
				t.Errorf("gcnserve_request_size_bytes{ProcessGraph} count = %d, want 9 (every request whose message was read)", c)
			}
		}
	}
	if v := gaugeValue(families, "gcnserve_auth_failures_total", map[string]string{"protocol": "grpc", "reason": "invalid"}); v != 1 {
		t.Errorf("gcnserve_auth_failures_total = %v, want 1", v)
	}
	if mi := families["gcnserve_model_info"].GetMetric(); len(mi) != 1 || labels(mi[0])["sha256"] == "" {
		t.Errorf("gcnserve_model_info: want one series with a sha256, got %v", mi)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "go_build_info", "gcnserve_build_info"} {
		if families[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// Every failure was logged once at warn, durations as Go duration strings.
	failures := 0
	sc := bufio.NewScanner(strings.NewReader(ts.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line["msg"] != "request failed" {
			continue
		}
		failures++
		if line["level"] != "WARN" || line["method"] != processGraph || line["peer"] == "" || line["code"] == "OK" {
			t.Errorf("failure log line %v: want level WARN, method %s, a peer and a failure code", line, processGraph)
		}
		d, ok := line["duration"].(string)
		if !ok {
			t.Errorf("failure log line duration %v (%T): want a Go duration string", line["duration"], line["duration"])
		} else if _, err := time.ParseDuration(d); err != nil {
			t.Errorf("failure log line duration %q: %v", d, err)
		}
	}
	if failures != 6 {
		t.Errorf("logged %d failed requests, want 6:\n%s", failures, ts.logs.String())
	}
}

// scrapeUntil scrapes h until done accepts the parsed families (or fails
// the test after 10 s) and returns the last parse.
func scrapeUntil(t *testing.T, h http.Handler, done func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := scrape(t, h)
		if done(f) {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never reached the expected state")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scrape GETs /metrics in the text format and parses it with Prometheus'
// own parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	var p expfmt.TextParser
	f, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return f
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func sumSamples(f *dto.MetricFamily) uint64 {
	var n uint64
	for _, m := range f.GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

func sumCounter(f *dto.MetricFamily) float64 {
	var n float64
	for _, m := range f.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n
}

// gaugeValue is the value of the series of name with exactly want's labels
// (a counter or a gauge), or -1 when there is none.
func gaugeValue(f map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	for _, m := range f[name].GetMetric() {
		l := labels(m)
		match := len(l) == len(want)
		for k, v := range want {
			match = match && l[k] == v
		}
		if match {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func durationSum(f map[string]*dto.MetricFamily, method string) float64 {
	for _, m := range f["gcnserve_request_duration_seconds"].GetMetric() {
		if labels(m)["method"] == method {
			return m.GetHistogram().GetSampleSum()
		}
	}
	return 0
}

// TestHealthWatchEndIsNotAFailure: a client ending its health Watch stream
// (every gcnclient run does) is counted with its code, Canceled, but is not
// logged as a failed request and takes nothing from the failed-request log
// budget; a failed Check still is logged.
func TestHealthWatchEndIsNotAFailure(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health := healthpb.NewHealthClient(ts.conn)
	for range 3 {
		wctx, wcancel := context.WithCancel(ctx)
		w, err := health.Watch(wctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("first Watch answer: %v", err)
		}
		wcancel()
	}
	// A Check for an unknown service fails (NotFound) and is logged.
	_, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no-such-service"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Check of an unknown service: %v, want NOT_FOUND", err)
	}
	const watch = "grpc.health.v1.Health/Watch"
	families := scrapeUntil(t, ts.m.Handler(), func(f map[string]*dto.MetricFamily) bool {
		return sumCounter(f["gcnserve_requests_total"]) >= 4
	})
	var canceled float64
	for _, mt := range families["gcnserve_requests_total"].GetMetric() {
		if l := labels(mt); l["method"] == watch && l["code"] == "Canceled" {
			canceled += mt.GetCounter().GetValue()
		}
	}
	if canceled != 3 {
		t.Errorf("gcnserve_requests_total{method=%q,code=Canceled} = %v, want 3", watch, canceled)
	}
	logs := ts.logs.String()
	if strings.Contains(logs, watch) {
		t.Errorf("a client ending its Watch stream was logged:\n%s", logs)
	}
	if !strings.Contains(logs, "no-such-service") && !strings.Contains(logs, "NotFound") {
		t.Errorf("the failed Check was not logged:\n%s", logs)
	}
}
