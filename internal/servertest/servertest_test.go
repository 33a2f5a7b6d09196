package servertest

import (
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestBinaryBuiltOnce: every call returns the same executable.
func TestBinaryBuiltOnce(t *testing.T) {
	a, b := Binary(t), Binary(t)
	if a != b {
		t.Errorf("Binary = %q, then %q; want one build", a, b)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("Binary %q: %v %v, want an executable file", a, fi, err)
	}
}

// TestServerLifecycle runs the server on a given non-default loopback
// address with --http-addr, reads /proc, and stops it with SIGTERM.
func TestServerLifecycle(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	s := Run(t, Options{Addr: addr, HTTP: true, Args: []string{"--model", "model/karate.onnx", "--drain-delay", "0s"}})
	if s.Addr != addr || !strings.HasPrefix(s.HTTPAddr, "127.0.0.1:") {
		t.Errorf("Addr %q, HTTPAddr %q; want %q and a 127.0.0.1 port", s.Addr, s.HTTPAddr, addr)
	}
	res, err := http.Get("http://" + s.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s, want 200", res.Status)
	}
	rss, hwm := s.Memory(t, "VmRSS"), s.Memory(t, "VmHWM")
	if rss <= 0 || hwm < rss {
		t.Errorf("VmRSS %d, VmHWM %d bytes; want 0 < VmRSS <= VmHWM", rss, hwm)
	}
	if cpu := s.CPUTime(t); cpu <= 0 {
		t.Errorf("CPU time %v after loading a model, want > 0", cpu)
	}
	select {
	case <-s.Exited():
		t.Fatal("exited while serving")
	default:
	}
	s.Signal(t, syscall.SIGTERM)
	if code := s.ExitCode(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if !s.ExitedAt().After(s.Started) {
		t.Errorf("ExitedAt %v not after Started %v", s.ExitedAt(), s.Started)
	}
	if s.Log() == "" {
		t.Error("no output captured")
	}
}
