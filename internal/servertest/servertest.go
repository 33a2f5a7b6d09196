// Package servertest runs the real gcnserve binary as a child process, for
// the end-to-end tests (test/...) and the tests of its clients (cmd/client,
// examples/embed, bench/inprocess).
//
// The binary is the one 'make build' makes (-tags ortembed: the ONNX Runtime
// library inside it), built once per test binary into a temporary directory
// that Main removes. A Server is started on a loopback address (a free port
// on 127.0.0.1, or one the test gives, such as 127.0.0.3:port), with its
// stdout and stderr captured, and is killed when the test ends if it is
// still running.
package servertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gcnserve/gcnserve/internal/testenv"
)

// DefaultTimeout is how long Start and Run wait for SERVING unless told.
const DefaultTimeout = 60 * time.Second

var build struct {
	main bool // Main is running the tests: it removes dir afterwards
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// Main runs the tests, removes the binary Binary built and, when they
// passed, fails them if a goroutine they started is still running
// (goleak.Find, as goleak.VerifyTestMain does); call it from TestMain:
// func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }.
func Main(m *testing.M) int {
	build.main = true
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	if code == 0 {
		if err := goleak.Find(testenv.LeakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	return code
}

// Binary builds gcnserve once per test binary as 'make build' does
// (scripts/embed_ort.sh, then 'go build -tags ortembed ./cmd/server') and
// returns its path. The test binary's TestMain must call Main.
func Binary(t testing.TB) string {
	t.Helper()
	if !build.main {
		t.Fatal("servertest.Binary: the package's TestMain must call servertest.Main, which removes the binary")
	}
	root := testenv.RepoRoot(t)
	testenv.ORTLibrary(t)
	build.once.Do(func() {
		out, err := exec.Command("bash", filepath.Join(root, "scripts", "embed_ort.sh")).CombinedOutput()
		if err != nil {
			build.out, build.err = out, fmt.Errorf("scripts/embed_ort.sh: %w", err)
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		if build.dir, build.err = os.MkdirTemp("", "servertest-"); build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "gcnserve")
		cmd := exec.Command(goTool, "build", "-tags", "ortembed", "-o", build.path, "./cmd/server")
		cmd.Dir = root
		if build.out, build.err = cmd.CombinedOutput(); build.err != nil {
			build.err = fmt.Errorf("go build -tags ortembed ./cmd/server: %w", build.err)
		}
	})
	if build.err != nil {
		if strings.Contains(string(build.out), "fetch_ort") {
			testenv.Missing(t, "the ONNX Runtime library to embed ("+strings.TrimSpace(string(build.out))+")")
		}
		t.Fatalf("%v\n%s", build.err, build.out)
	}
	return build.path
}

// FreeAddr returns a 127.0.0.1 address nobody listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// Options says how to run gcnserve. The zero value runs Binary from the
// repository root on a free port with the test's own environment.
type Options struct {
	Binary   string        // the executable; default Binary(t)
	Dir      string        // working directory; default the repository root
	Env      []string      // added to the environment (later entries win)
	EmptyEnv bool          // the environment is Env alone, not the test's plus Env
	Addr     string        // --addr; default FreeAddr
	HTTP     bool          // also pass --http-addr on a free 127.0.0.1 port (Server.HTTPAddr)
	Args     []string      // after --addr (and --http-addr)
	Timeout  time.Duration // Run: how long to wait for SERVING; default DefaultTimeout
}

// Server is one running (or exited) gcnserve.
type Server struct {
	Addr     string    // the gRPC address, host:port
	HTTPAddr string    // the --http-addr address, when Options.HTTP
	Pid      int       // the process id
	Started  time.Time // just before exec

	cmd    *exec.Cmd
	tls    bool // Args hold --tls-cert: health is asked over TLS
	log    syncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result; written before exited closes
	exitAt time.Time     // written before exited closes
}

// syncBuffer is the server's stdout and stderr: the exec package copies
// into it from its own goroutine while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs gcnserve with args from the repository root, with the ONNX
// Runtime library tests use ($GCNSERVE_ORT_LIB set to testenv.ORTLibrary),
// and waits up to DefaultTimeout for SERVING.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return Run(t, Options{Env: []string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)}, Args: args})
}

// Run is Launch followed by WaitServing(o.Timeout).
func Run(t testing.TB, o Options) *Server {
	t.Helper()
	s := Launch(t, o)
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	s.WaitServing(t, timeout)
	return s
}

// Launch starts gcnserve as o says and returns without waiting for it to
// serve. When the test ends the process is killed if still running, and its
// output is logged if the test failed.
func Launch(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Binary == "" {
		o.Binary = Binary(t)
	}
	if o.Dir == "" {
		o.Dir = testenv.RepoRoot(t)
	}
	if o.Addr == "" {
		o.Addr = FreeAddr(t)
	}
	s := &Server{Addr: o.Addr, tls: slices.Contains(o.Args, "--tls-cert"), exited: make(chan struct{})}
	args := []string{"--addr", s.Addr}
	if o.HTTP {
		s.HTTPAddr = FreeAddr(t)
		args = append(args, "--http-addr", s.HTTPAddr)
	}
	s.cmd = exec.Command(o.Binary, append(args, o.Args...)...)
	s.cmd.Dir = o.Dir
	if o.EmptyEnv {
		s.cmd.Env = append([]string{}, o.Env...)
	} else {
		s.cmd.Env = append(os.Environ(), o.Env...)
	}
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	s.Started = time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Pid = s.cmd.Process.Pid
	go func() {
		s.err = s.cmd.Wait()
		s.exitAt = time.Now()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("gcnserve %s log:\n%s", strings.Join(s.cmd.Args[1:], " "), s.Log())
		}
	})
	return s
}

// WaitServing polls grpc.health.v1 (service "") until the server says
// SERVING and returns the time from exec to then. It fails the test if the
// process exits first or timeout passes.
func (s *Server) WaitServing(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	creds := insecure.NewCredentials()
	if s.tls {
		// Only to poll health: the tests check the certificate themselves.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	// A short reconnect backoff: the default (1s) would measure grpc-go's
	// backoff rather than the server's start-up.
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.2, MaxDelay: 50 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
			return time.Since(s.Started)
		}
		select {
		case <-s.exited:
			t.Fatalf("gcnserve %s exited before serving: %v\n%s", s.Addr, s.err, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gcnserve %s not SERVING after %v (last: %v %v)\n%s", s.Addr, timeout, res.GetStatus(), err, s.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Log returns what the server wrote to stdout and stderr so far.
func (s *Server) Log() string { return s.log.String() }

// Exited is closed when the process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitErr waits for the process to exit and returns the result of Wait:
// nil for exit status 0.
func (s *Server) ExitErr() error { <-s.exited; return s.err }

// ExitedAt waits for the process to exit and returns when it did.
func (s *Server) ExitedAt() time.Time { <-s.exited; return s.exitAt }

// ExitCode waits up to within for the process to exit and returns its exit
// status (-1 if a signal killed it); the test fails if it is still running
// then.
func (s *Server) ExitCode(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(within):
		t.Fatalf("gcnserve still running after %v\n%s", within, s.Log())
	}
	if s.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", s.err)
	return -1
}

// Signal sends sig to the process.
func (s *Server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to gcnserve %s: %v", sig, s.Addr, err)
	}
}

// CPUTime is the process's user+system CPU time so far, from /proc
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

// Memory returns a /proc/<pid>/status size in bytes: "VmRSS" (resident now)
// or "VmHWM" (the resident peak).
func (s *Server) Memory(t testing.TB, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(s.Pid) + "/status")
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
	t.Fatalf("/proc/%d/status has no %s", s.Pid, field)
	return 0
}

// Dial is a plaintext client connection to addr (host:port or a resolver
// URL) that sends and receives messages up to 1 GiB (grpc-go's default
// receive limit is 4 MiB), closed when the test ends; opts come after
// those.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(1<<30), grpc.MaxCallRecvMsgSize(1<<30)),
	}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Copy copies the file src into dir, executable, and returns the copy's path.
func Copy(t testing.TB, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// CopyFile writes a copy of the file src at dst, making dst's directory:
// a model file put into a repository the server scans.
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
