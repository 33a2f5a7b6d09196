// Package realserver builds bin/gcnserve with 'make build' (ONNX Runtime
// embedded) and runs copies of it as child processes for the deployment
// tests: lone binary, scale-out.
package realserver

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gcnserve/gcnserve/internal/testenv"
)

var build struct {
	once sync.Once
	out  []byte
	err  error
}

// Binary runs 'make build' once per test binary and returns bin/gcnserve.
func Binary(t testing.TB) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	build.once.Do(func() {
		build.out, build.err = exec.Command("make", "-C", root, "--no-print-directory", "build").CombinedOutput()
	})
	if build.err != nil {
		if strings.Contains(string(build.out), "fetch_ort") {
			testenv.Missing(t, "the ONNX Runtime library (make build: "+string(build.out)+")")
		}
		t.Fatalf("make build: %v\n%s", build.err, build.out)
	}
	return filepath.Join(root, "bin", "gcnserve")
}

// Process is one running gcnserve.
type Process struct {
	Cmd     *exec.Cmd
	Addr    string
	Started time.Time
	mu      sync.Mutex
	log     strings.Builder // guarded by mu
	Exited  chan struct{}   // closed when the process has exited
	exitErr error           // set before Exited closes
	exitAt  time.Time       // set before Exited closes
}

// Log is everything the process wrote to stderr and stdout so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// ExitErr waits for the process to exit and returns the result of Wait.
func (p *Process) ExitErr() error { <-p.Exited; return p.exitErr }

// ExitedAt waits for the process to exit and returns when it did.
func (p *Process) ExitedAt() time.Time { <-p.Exited; return p.exitAt }

// Start runs bin with args in dir and environment env (nil: the test's own)
// and returns without waiting for it to serve. The process is killed when
// the test ends.
func Start(t testing.TB, bin, dir string, env []string, addr string, args ...string) *Process {
	t.Helper()
	p := &Process{Addr: addr, Exited: make(chan struct{})}
	p.Cmd = exec.Command(bin, append([]string{"--addr", addr}, args...)...)
	p.Cmd.Dir = dir
	p.Cmd.Env = env
	out, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdout = p.Cmd.Stderr
	p.Started = time.Now()
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.exitErr = p.Cmd.Wait()
		p.exitAt = time.Now()
		close(p.Exited)
	}()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.Exited
		if t.Failed() {
			t.Logf("gcnserve %s log:\n%s", addr, p.Log())
		}
	})
	return p
}

// WaitServing polls grpc.health.v1 until the server says SERVING and returns
// the time from Start to then.
func (p *Process) WaitServing(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	// A short reconnect backoff: the default (1s) would measure grpc-go's
	// backoff rather than the server's start-up.
	conn := Dial(t, p.Addr, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.2, MaxDelay: 50 * time.Millisecond},
		MinConnectTimeout: time.Second,
	}))
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
			return time.Since(p.Started)
		}
		select {
		case <-p.Exited:
			t.Fatalf("gcnserve %s exited before serving: %v\n%s", p.Addr, p.exitErr, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gcnserve %s not SERVING after %v (last: %v %v)\n%s", p.Addr, timeout, res.GetStatus(), err, p.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, p.Addr, err)
	}
}

// Dial is a plaintext client connection to addr.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(fmt.Errorf("dial %s: %w", addr, err))
	}
	return conn
}

// Copy copies the file src to dir and returns the copy's path.
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
