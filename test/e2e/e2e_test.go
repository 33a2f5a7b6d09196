// Package e2e tests the real binary: bin/gcnserve built by 'make build',
// started on a loopback port, called by a client generated from the
// tutorial's original gcn.proto (testdata/gcn.proto, a verbatim copy).
//
// This package must not import gen/: the tutorial's messages have the same
// full names as ours, and one binary cannot register both.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/internal/testenv"
	tutorial "github.com/gcnserve/gcnserve/test/e2e/tutorialpb"
)

// build runs 'make build' once per test binary.
var build struct {
	once sync.Once
	out  []byte
	err  error
}

// binary runs 'make build' once and returns bin/gcnserve.
func binary(t *testing.T) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	testenv.ORTLibrary(t)
	build.once.Do(func() {
		build.out, build.err = exec.Command("make", "-C", root, "--no-print-directory", "build").CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("make build: %v\n%s", build.err, build.out)
	}
	return filepath.Join(root, "bin", "gcnserve")
}

// process is a running gcnserve.
type process struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr strings.Builder // guarded by mu
	exited chan error
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// start runs bin/gcnserve from the repo root, so it finds the bundled model
// and the ORT library by itself, and waits until health says SERVING.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	bin := binary(t)
	p := &process{addr: freeAddr(t), exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"--addr", p.addr}, args...)...)
	p.cmd.Dir = testenv.RepoRoot(t)
	p.cmd.Env = append(os.Environ(), "GCNSERVE_ORT_LIB=") // prove it finds the library itself
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("gcnserve log:\n%s", p.log())
		}
	})

	conn := dial(t, p.addr)
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
			return p
		}
		select {
		case err := <-p.exited:
			t.Fatalf("gcnserve exited before serving: %v\n%s", err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gcnserve not SERVING after 20s (last: %v %v)\n%s", res.GetStatus(), err, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(1<<30), grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
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
	client := tutorial.NewGCNServiceClient(dial(t, p.addr))
	req, want := goldenKarate(t)
	res, err := client.ProcessGraph(context.Background(), req)
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
	stream, err := reflectionpb.NewServerReflectionClient(dial(t, p.addr)).ServerReflectionInfo(context.Background())
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

// cpuTime is the process's user+system CPU time, from /proc.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// TestSIGTERMDrains sends SIGTERM while a call is in flight: the call
// completes with every score, then the process exits cleanly.
func TestSIGTERMDrains(t *testing.T) {
	p := start(t, "--max-request-bytes", strconv.Itoa(256<<20), "--shutdown-grace", "60s")
	conn := dial(t, p.addr)
	client := tutorial.NewGCNServiceClient(conn)
	// Warm the connection so the call below is on an established one.
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	req := bigGraph(100_000, 500_000)
	before := cpuTime(t, p.cmd.Process.Pid)

	type answer struct {
		res *tutorial.GCNResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := client.ProcessGraph(context.Background(), req)
		done <- answer{res, err}
	}()
	// The server is working on the call once it has burnt CPU on it.
	for cpuTime(t, p.cmd.Process.Pid)-before < 100*time.Millisecond {
		select {
		case a := <-done:
			t.Fatalf("call finished (err %v) before the server was seen working: make the graph bigger", a.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil {
		t.Fatalf("in-flight call after SIGTERM: %v, want it to complete", a.err)
	}
	if len(a.res.NodeScores) != len(req.Nodes) {
		t.Errorf("got %d scores, want %d", len(a.res.NodeScores), len(req.Nodes))
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("gcnserve still running 60s after SIGTERM")
	}
	if log := p.log(); !strings.Contains(log, "stopped gracefully") {
		t.Errorf("log lacks %q:\n%s", "stopped gracefully", log)
	}
}

// TestStartFailures: a broken deployment exits non-zero at once with one
// clear line.
func TestStartFailures(t *testing.T) {
	bin := binary(t)
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
			cmd := exec.Command(bin, append([]string{"--addr", freeAddr(t)}, tt.args...)...)
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
