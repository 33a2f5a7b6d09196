// Package servertest runs the real gcnserve binary for tests of its
// clients (cmd/client, examples/embed, the in-process vs RPC benchmark):
// built once per test binary with 'go build ./cmd/server', started on a free
// loopback port, and returned once grpc.health.v1 reports SERVING.
package servertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gcnserve/gcnserve/internal/testenv"
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// Main runs the tests and removes the binary Binary built; call it from
// TestMain: func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// Binary builds ./cmd/server once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	build.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		build.dir, build.err = os.MkdirTemp("", "servertest-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "gcnserve")
		cmd := exec.Command(goTool, "build", "-o", build.path, "./cmd/server")
		cmd.Dir = root
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("go build ./cmd/server: %v\n%s", build.err, build.out)
	}
	return build.path
}

// Server is a running gcnserve.
type Server struct {
	Addr string // host:port on 127.0.0.1
	Pid  int

	mu  sync.Mutex
	log bytes.Buffer // guarded by mu: the server's stderr
}

// Log returns what the server wrote to stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *Server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

// Start runs gcnserve with args (after --addr) from the repository root,
// with the ONNX Runtime library tests use, and waits up to 60 s for SERVING
// (asking over TLS, without verification, when args hold --tls-cert).
// The server is killed when the test ends; its log is printed if it failed.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := Binary(t)
	lib := testenv.ORTLibrary(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: lis.Addr().String()}
	lis.Close()
	cmd := exec.Command(bin, append([]string{"--addr", s.Addr}, args...)...)
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "GCNSERVE_ORT_LIB="+lib)
	cmd.Stderr = s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("gcnserve %s log:\n%s", strings.Join(args, " "), s.Log())
		}
	})

	creds := insecure.NewCredentials()
	if slices.Contains(args, "--tls-cert") {
		// Only to poll health: the tests check the certificate themselves.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
			return s
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("gcnserve exited before serving: %v\n%s", err, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gcnserve not SERVING after 60s (last: %v %v)\n%s", res.GetStatus(), err, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CPUTime is the server process's user+system CPU time so far, from /proc
// (10 ms resolution).
func (s *Server) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(s.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
