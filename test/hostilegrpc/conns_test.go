package hostilegrpc

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gcnserve/gcnserve/internal/servertest"
)

// openFDs is how many file descriptors process pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestIdleConnectionsBounded: a client without a token that opens many
// gRPC connections and sends nothing more (150 with the HTTP/2 preface
// and SETTINGS, 50 with nothing) holds at most --max-grpc-conns of them
// (the rest wait in the kernel's accept queue), and each is closed once
// idle for --grpc-idle-timeout (with the preface) or after the 10 s
// handshake deadline (without; grpc-go's own is 120 s); then a real
// client is served. An idle close is a GOAWAY, a ping the client here
// never answers and grpc-go's 5 s wait for it: about 7 s per round of 50. On the
// unfixed binary every connection was accepted and kept until
// --max-connection-age (5 minutes; forever with 0): 19,990 of them took
// every file descriptor (ulimit 20,000), peak RSS 92 -> 414 MiB, and
// every new client timed out.
func TestIdleConnectionsBounded(t *testing.T) {
	const limit, withPreface, silent = 50, 150, 50
	p := start(t, []string{"GCNSERVE_MAX_GRPC_CONNS=" + strconv.Itoa(limit), "GCNSERVE_GRPC_IDLE_TIMEOUT=2s", "GCNSERVE_MAX_CONNECTION_AGE=0"})
	base := openFDs(t, p.Pid)
	preface := append([]byte(http2.ClientPreface), 0, 0, 0, 4, 0, 0, 0, 0, 0) // an empty SETTINGS frame
	conns := make([]net.Conn, 0, withPreface+silent)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range withPreface + silent {
		c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i < withPreface {
			if _, err := c.Write(preface); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
		}
	}
	// The server takes connections as it gets to them: wait until it has
	// taken as many as it will (its descriptor count stops growing).
	most, last, settled := 0, -1, 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && settled < 5; time.Sleep(200 * time.Millisecond) {
		n := openFDs(t, p.Pid) - base
		most = max(most, n)
		if n == last {
			settled++
		} else {
			last, settled = n, 0
		}
	}
	t.Logf("%d connections opened: the server holds %d more file descriptors (--max-grpc-conns %d)", withPreface+silent, most, limit)
	if most > limit+10 {
		t.Errorf("server holds %d more file descriptors with %d idle connections open, want at most --max-grpc-conns %d (+10)", most, withPreface+silent, limit)
	}

	// Every connection is closed by the server in time: a read ends.
	ended := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			c.SetReadDeadline(time.Now().Add(150 * time.Second))
			_, err := io.Copy(io.Discard, c)
			ended <- err
		}()
	}
	began := time.Now()
	for i := range conns {
		if err := <-ended; err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after 150s (%d closed by the server before it)", i)
			}
		}
	}
	t.Logf("all %d closed by the server within %v", len(conns), time.Since(began).Round(time.Millisecond))

	conn := servertest.Dial(t, p.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the idle connections: %v %v, want SERVING", res.GetStatus(), err)
	}
}
