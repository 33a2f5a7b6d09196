// Package e2e tests the real binary: gcnserve built as 'make build' builds
// it (internal/servertest), started on a loopback port, called by a client
// generated from the tutorial's original gcn.proto (testdata/gcn.proto, a
// verbatim copy).
//
// This package must not import gen/: the tutorial's messages have the same
// full names as ours, and one binary cannot register both.
package e2e

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
	tutorial "github.com/gcnserve/gcnserve/test/e2e/tutorialpb"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// start runs gcnserve (as 'make build' makes it) from the repo root, so it
// finds the bundled model, with GCNSERVE_ORT_LIB empty to prove it finds the
// library itself, and waits up to 20s until health says SERVING.
func start(t *testing.T, args ...string) *servertest.Server {
	t.Helper()
	return servertest.Run(t, servertest.Options{Env: []string{"GCNSERVE_ORT_LIB="}, Args: args, Timeout: 20 * time.Second})
}

// goldenKarate is the karate fixture: the example request and PyTorch's
// scores for it.
func goldenKarate(t *testing.T) (*tutorial.GraphData, []float32) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Request json.RawMessage `json:"request"`
		Scores  []float32       `json:"scores"`
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	req := &tutorial.GraphData{}
	// The fixture may carry fields the tutorial's proto does not know.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(fx.Request, req); err != nil {
		t.Fatal(err)
	}
	return req, fx.Scores
}

// TestTutorialClient: an unmodified tutorial client gets the scores PyTorch
// computed, from the real binary over a real socket.
func TestTutorialClient(t *testing.T) {
	p := start(t)
	client := tutorial.NewGCNServiceClient(servertest.Dial(t, p.Addr))
	req, want := goldenKarate(t)
	res, err := client.ProcessGraph(testenv.Context(t), req)
	if err != nil {
		t.Fatalf("ProcessGraph: %v", err)
	}
	if len(res.NodeScores) != len(req.Nodes) {
		t.Fatalf("got %d scores, want %d", len(res.NodeScores), len(req.Nodes))
	}
	for i, n := range req.Nodes {
		got, ok := res.NodeScores[n.Id]
		if !ok || math.Abs(float64(got-want[i])) > 1e-5 {
			t.Errorf("node %s: score %v (present %v), PyTorch %v", n.Id, got, ok, want[i])
		}
	}
}

// TestReflection lists the services as grpcurl would.
func TestReflection(t *testing.T) {
	p := start(t)
	stream, err := reflectionpb.NewServerReflectionClient(servertest.Dial(t, p.Addr)).ServerReflectionInfo(testenv.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"GCNService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, want %s among them", names, want)
		}
	}
}

// bigGraph is a karate-shaped (34 features) graph large enough that the
// server needs a noticeable time to answer.
func bigGraph(nodes, edges int) *tutorial.GraphData {
	r := rand.New(rand.NewPCG(1, 2))
	g := &tutorial.GraphData{Nodes: make([]*tutorial.Node, nodes), Edges: make([]*tutorial.Edge, edges)}
	for i := range g.Nodes {
		f := make([]float32, 34)
		f[r.IntN(34)] = 1
		g.Nodes[i] = &tutorial.Node{Id: "n" + strconv.Itoa(i), Features: f}
	}
	for i := range g.Edges {
		g.Edges[i] = &tutorial.Edge{SourceId: "n" + strconv.Itoa(r.IntN(nodes)), TargetId: "n" + strconv.Itoa(r.IntN(nodes))}
	}
	return g
}

// TestSIGTERMDrains sends SIGTERM while a call is in flight: the call
// completes with every score, then the process exits cleanly.
func TestSIGTERMDrains(t *testing.T) {
	p := start(t, "--max-request-bytes", strconv.Itoa(256<<20), "--shutdown-grace", "60s")
	conn := servertest.Dial(t, p.Addr)
	client := tutorial.NewGCNServiceClient(conn)
	// Warm the connection so the call below is on an established one.
	if _, err := healthpb.NewHealthClient(conn).Check(testenv.Context(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	req := bigGraph(100_000, 500_000)
	before := p.CPUTime(t)

	type answer struct {
		res *tutorial.GCNResult
		err error
	}
	done := make(chan answer, 1)
	ctx := testenv.Context(t)
	go func() {
		res, err := client.ProcessGraph(ctx, req)
		done <- answer{res, err}
	}()
	// The server is working on the call once it has burnt CPU on it.
	for p.CPUTime(t)-before < 100*time.Millisecond {
		select {
		case a := <-done:
			t.Fatalf("call finished (err %v) before the server was seen working: make the graph bigger", a.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.Signal(t, syscall.SIGTERM)
	a := <-done
	if a.err != nil {
		t.Fatalf("in-flight call after SIGTERM: %v, want it to complete", a.err)
	}
	if len(a.res.NodeScores) != len(req.Nodes) {
		t.Errorf("got %d scores, want %d", len(a.res.NodeScores), len(req.Nodes))
	}
	select {
	case <-p.Exited():
		if err := p.ExitErr(); err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("gcnserve still running 60s after SIGTERM")
	}
	if log := p.Log(); !strings.Contains(log, "stopped gracefully") {
		t.Errorf("log lacks %q:\n%s", "stopped gracefully", log)
	}
}

// TestStartFailures: a broken deployment exits non-zero at once with one
// clear line.
func TestStartFailures(t *testing.T) {
	bin := servertest.Binary(t)
	root := testenv.RepoRoot(t)
	notModel := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(notModel, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing model", []string{"--model", "/nonexistent/model.onnx"}, "model file"},
		{"invalid model", []string{"--model", notModel}, "not a loadable ONNX model"},
		{"missing ORT library", []string{"--ort-lib", "/nonexistent/libonnxruntime.so"}, "load onnxruntime library"},
		{"bad flag value", []string{"--max-nodes", "many"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"--addr", servertest.FreeAddr(t)}, tt.args...)...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("exit status 0, want non-zero; output:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "gcnserve: ") || !strings.Contains(last, tt.want) {
				t.Errorf("last line %q, want a 'gcnserve: ' line containing %q", last, tt.want)
			}
		})
	}
}
