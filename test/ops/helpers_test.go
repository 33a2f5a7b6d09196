// Package ops tests the real binary as an operator runs it: memory under a
// flood, drain on SIGTERM, reload on SIGHUP, flag validation and bearer
// tokens. Each test starts bin/gcnserve (built by 'make build') on a
// loopback port.
package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

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
	exited chan struct{}   // closed when the process has exited
	err    error           // cmd.Wait's result, set before exited closes
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exitCode waits up to within for the process to exit and returns its code.
func (p *process) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("gcnserve still running after %v\n%s", within, p.log())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// start runs bin/gcnserve from the repo root and waits until health says
// SERVING.
func start(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	bin := binary(t)
	p := &process{addr: freeAddr(t), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"--addr", p.addr}, args...)...)
	p.cmd.Dir = testenv.RepoRoot(t)
	p.cmd.Env = append(os.Environ(), env...)
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
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("gcnserve log:\n%s", p.log())
		}
	})
	health := healthpb.NewHealthClient(dial(t, p.addr))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("gcnserve exited before serving: %v\n%s", p.err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gcnserve not SERVING after 30s (last: %v %v)\n%s", res.GetStatus(), err, p.log())
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

// rawCodec sends pre-serialized requests and keeps responses as bytes, so
// the test's client spends no CPU on protobuf for big graphs.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// processGraph calls ProcessGraph with request bytes.
func processGraph(ctx context.Context, conn *grpc.ClientConn, req []byte, opts ...grpc.CallOption) ([]byte, error) {
	var res []byte
	err := conn.Invoke(ctx, gcnpb.GCNService_ProcessGraph_FullMethodName, &req, &res,
		append([]grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}, opts...)...)
	return res, err
}

// karateRequest is the bundled example request, serialized.
func karateRequest(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Request json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	req := &gcnpb.GraphData{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(fx.Request, req); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// procStatus returns a /proc/<pid>/status field in bytes (VmHWM, VmRSS).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
