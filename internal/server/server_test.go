package server

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// testConfig is DefaultConfig with the real bundled model and ORT library.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ModelPath = filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx")
	cfg.ORTLibrary = testenv.ORTLibrary(t)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DrainDelay = 0 // Shutdown is the SIGTERM drain: no balancer to wait for here
	return cfg
}

// serve runs s on an in-memory listener and returns a connection to it.
func serve(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(256<<20), grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Shutdown()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return conn
}

// startReal serves the real bundled model in memory.
func startReal(t *testing.T, edit func(*Config)) gcnpb.GCNServiceClient {
	t.Helper()
	return gcnpb.NewGCNServiceClient(startRealConn(t, edit))
}

// startRealConn is startReal's connection, for calls beyond the generated
// client.
func startRealConn(t *testing.T, edit func(*Config)) *grpc.ClientConn {
	t.Helper()
	cfg := testConfig(t)
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return serve(t, s)
}

// node is a karate-model node with features 1 at position i%34.
func node(id string, i int) *gcnpb.Node {
	f := make([]float32, 34)
	f[i%34] = 1
	return &gcnpb.Node{Id: id, Features: f}
}

func edge(s, t string) *gcnpb.Edge { return &gcnpb.Edge{SourceId: s, TargetId: t} }

func triangle() *gcnpb.GraphData {
	return &gcnpb.GraphData{
		Nodes: []*gcnpb.Node{node("a", 0), node("b", 1), node("c", 33)},
		Edges: []*gcnpb.Edge{edge("a", "b"), edge("b", "c")},
	}
}

func TestProcessGraph(t *testing.T) {
	client := startReal(t, nil)
	ctx := context.Background()

	res, err := client.ProcessGraph(ctx, triangle())
	if err != nil {
		t.Fatalf("ProcessGraph: %v", err)
	}
	if len(res.NodeScores) != 3 || len(res.Predictions) != 0 {
		t.Fatalf("got %d scores and %d predictions, want 3 and 0 (predictions are opt-in)", len(res.NodeScores), len(res.Predictions))
	}

	req := triangle()
	req.IncludePredictions = true
	detailed, err := client.ProcessGraph(ctx, req)
	if err != nil {
		t.Fatalf("ProcessGraph with predictions: %v", err)
	}
	if len(detailed.Predictions) != 3 {
		t.Fatalf("got %d predictions, want 3", len(detailed.Predictions))
	}
	for i, p := range detailed.Predictions {
		if want := req.Nodes[i].Id; p.Id != want {
			t.Errorf("prediction %d is for %q, want %q (request order)", i, p.Id, want)
		}
		if len(p.Probabilities) != 2 {
			t.Fatalf("node %s: %d probabilities, want 2", p.Id, len(p.Probabilities))
		}
		if sum := p.Probabilities[0] + p.Probabilities[1]; math.Abs(float64(sum)-1) > 1e-5 {
			t.Errorf("node %s: probabilities sum to %v, want 1", p.Id, sum)
		}
		// The karate model's score is the probability of class 0, "Mr. Hi".
		if got, want := detailed.NodeScores[p.Id], p.Probabilities[0]; got != want {
			t.Errorf("node %s: score %v, want P(Mr. Hi) = %v", p.Id, got, want)
		}
		if got := res.NodeScores[p.Id]; got != detailed.NodeScores[p.Id] {
			t.Errorf("node %s: score %v without predictions, %v with", p.Id, got, detailed.NodeScores[p.Id])
		}
		wantClass := int32(0)
		if p.Probabilities[1] > p.Probabilities[0] {
			wantClass = 1
		}
		if p.ClassIndex != wantClass || p.ClassName != []string{"Mr. Hi", "Officer"}[wantClass] {
			t.Errorf("node %s: class %d %q, want %d", p.Id, p.ClassIndex, p.ClassName, wantClass)
		}
	}
}

func TestEmptyGraph(t *testing.T) {
	client := startReal(t, nil)
	res, err := client.ProcessGraph(context.Background(), &gcnpb.GraphData{})
	if err != nil {
		t.Fatalf("ProcessGraph(empty): %v, want an empty result", err)
	}
	if len(res.NodeScores) != 0 {
		t.Errorf("got %d scores, want 0", len(res.NodeScores))
	}
}

// TestBadInput checks every class of bad input: the code, a message naming
// the offending node, edge or limit, and that the server keeps serving.
func TestBadInput(t *testing.T) {
	client := startReal(t, func(c *Config) {
		c.MaxNodes, c.MaxEdges, c.MaxRequestBytes = 5, 4, 4096
	})
	with := func(edit func(g *gcnpb.GraphData)) *gcnpb.GraphData {
		g := triangle()
		edit(g)
		return g
	}
	nan := func(v float32) func(g *gcnpb.GraphData) {
		return func(g *gcnpb.GraphData) { g.Nodes[1].Features[7] = v }
	}
	big := &gcnpb.GraphData{}
	for i := range 5 {
		big.Nodes = append(big.Nodes, &gcnpb.Node{Id: strings.Repeat("x", 900) + string(rune('a'+i)), Features: make([]float32, 34)})
	}
	tests := []struct {
		name string
		req  *gcnpb.GraphData
		code codes.Code
		msg  string
	}{
		{"empty id", with(func(g *gcnpb.GraphData) { g.Nodes[1].Id = "" }), codes.InvalidArgument, `node 1: empty id`},
		{"duplicate id", with(func(g *gcnpb.GraphData) { g.Nodes[2].Id = "a" }), codes.InvalidArgument, `node 2: duplicate id "a" (also node 0)`},
		{"unknown source", with(func(g *gcnpb.GraphData) { g.Edges[1].SourceId = "zz" }), codes.InvalidArgument, `edge 1: source "zz" is not a node id`},
		{"unknown target", with(func(g *gcnpb.GraphData) { g.Edges[0].TargetId = "n9" }), codes.InvalidArgument, `edge 0: target "n9" is not a node id`},
		{"short features", with(func(g *gcnpb.GraphData) { g.Nodes[2].Features = g.Nodes[2].Features[:12] }), codes.InvalidArgument, `node 2 ("c"): 12 features, model wants 34`},
		{"NaN", with(nan(float32(math.NaN()))), codes.InvalidArgument, `node 1 ("b"): feature 7 is NaN`},
		{"+Inf", with(nan(float32(math.Inf(1)))), codes.InvalidArgument, `node 1 ("b"): feature 7 is +Inf`},
		{"-Inf", with(nan(float32(math.Inf(-1)))), codes.InvalidArgument, `node 1 ("b"): feature 7 is -Inf`},
		{"too many nodes", with(func(g *gcnpb.GraphData) {
			g.Nodes = append(g.Nodes, node("d", 3), node("e", 4), node("f", 5))
		}), codes.ResourceExhausted, `request has 6 nodes, limit is 5 (--max-nodes)`},
		{"too many edges", with(func(g *gcnpb.GraphData) {
			g.Edges = append(g.Edges, edge("a", "c"), edge("a", "c"), edge("c", "a"))
		}), codes.ResourceExhausted, `request has 5 edges, limit is 4 (--max-edges)`},
		{"too many bytes", big, codes.ResourceExhausted, `larger than max`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.ProcessGraph(context.Background(), tt.req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if _, err := client.ProcessGraph(context.Background(), triangle()); err != nil {
				t.Errorf("valid request after the bad one: %v", err)
			}
		})
	}
}

// TestMalformedBytes sends bytes that are not a GraphData at all.
func TestMalformedBytes(t *testing.T) {
	cc := startRealConn(t, nil)
	var out gcnpb.GCNResult
	err := cc.Invoke(context.Background(), gcnpb.GCNService_ProcessGraph_FullMethodName,
		rawBytes{0x0a, 0xff, 0xff, 0xff}, &out, grpc.ForceCodecV2(rawClientCodec{}))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "malformed") {
		t.Errorf("got %v %q, want InvalidArgument naming a malformed message", st.Code(), st.Message())
	}
}

func TestGetModelInfo(t *testing.T) {
	client := startReal(t, func(c *Config) { c.MaxNodes = 1234 })
	info, err := client.GetModelInfo(context.Background(), &gcnpb.ModelInfoRequest{})
	if err != nil {
		t.Fatalf("GetModelInfo: %v", err)
	}
	want := &gcnpb.ModelInfo{
		FeatureDim: 34, NumClasses: 2, ClassNames: []string{"Mr. Hi", "Officer"},
		ScoreClass: 0, OutputKind: "probabilities", OnnxruntimeVersion: testenv.ORTVersion,
		MaxNodes: 1234, MaxEdges: 10_000_000, MaxRequestBytes: 64 << 20,
	}
	got := &gcnpb.ModelInfo{
		FeatureDim: info.FeatureDim, NumClasses: info.NumClasses, ClassNames: info.ClassNames,
		ScoreClass: info.ScoreClass, OutputKind: info.OutputKind, OnnxruntimeVersion: info.OnnxruntimeVersion,
		MaxNodes: info.MaxNodes, MaxEdges: info.MaxEdges, MaxRequestBytes: info.MaxRequestBytes,
	}
	if !proto.Equal(got, want) {
		t.Errorf("GetModelInfo = %v, want %v", got, want)
	}
	if len(info.Sha256) != 64 || info.Name == "" || info.ScoreMeaning == "" || info.Dataset == "" {
		t.Errorf("sha256 %q, name %q, score_meaning %q, dataset %q: want all set", info.Sha256, info.Name, info.ScoreMeaning, info.Dataset)
	}
}

func TestHealthServing(t *testing.T) {
	health := healthpb.NewHealthClient(startRealConn(t, nil))
	for _, svc := range []string{"", "GCNService"} {
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, %v; want SERVING", svc, res.GetStatus(), err)
		}
	}
}

// rawBytes and rawClientCodec send bytes as they are, to test the server's
// handling of malformed messages.
type rawBytes []byte

type rawClientCodec struct{}

func (rawClientCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawBytes))}, nil
}
func (rawClientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}
func (rawClientCodec) Name() string { return "proto" }

func TestMetricsCountRequests(t *testing.T) {
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	client := gcnpb.NewGCNServiceClient(serve(t, s))
	if _, err := client.ProcessGraph(context.Background(), triangle()); err != nil {
		t.Fatal(err)
	}
	bad := triangle()
	bad.Nodes[0].Id = ""
	client.ProcessGraph(context.Background(), bad)

	wants := []string{
		`gcnserve_requests_total{code="OK",method="GCNService/ProcessGraph",protocol="grpc"} 1`,
		`gcnserve_requests_total{code="InvalidArgument",method="GCNService/ProcessGraph",protocol="grpc"} 1`,
		`gcnserve_phase_seconds_count{model="gcn-karate",phase="run"} 1`,
	}
	// The stats handler counts a call when its End event arrives, which
	// can follow the client's return by a moment, and the two calls' End
	// events may arrive in either order: wait for every line, not one.
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		debugHandler(s.metrics).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body = rec.Body.String()
		if containsAll(body, wants) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(body, "gcnserve_requests_total", "gcnserve_phase_seconds_count"))
		}
	}
}

// containsAll reports whether body contains every one of subs.
func containsAll(body string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(body, sub) {
			return false
		}
	}
	return true
}

// grepLines returns body's lines that contain any of subs.
func grepLines(body string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestPanicBecomesInternal: a handler's panic reaches the client as a
// generic Internal error (no detail), and the interceptor lets the next
// call through.
func TestPanicBecomesInternal(t *testing.T) {
	intercept := recoverPanics(slog.New(slog.NewTextHandler(io.Discard, nil)))
	info := &grpc.UnaryServerInfo{FullMethod: "/GCNService/ProcessGraph"}
	_, err := intercept(context.Background(), nil, info, func(context.Context, any) (any, error) {
		panic("boom: secret internals")
	})
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "boom") {
		t.Errorf("after a panic: %v %q, want Internal without the panic's detail", st.Code(), st.Message())
	}
	res, err := intercept(context.Background(), nil, info, func(context.Context, any) (any, error) { return "ok", nil })
	if err != nil || res != "ok" {
		t.Errorf("call after a panic: %v, %v; want ok", res, err)
	}
}
