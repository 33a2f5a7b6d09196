// Package scaleout runs three replicas of the real binary behind one gRPC
// client that balances per request (round_robin) and retries UNAVAILABLE,
// and takes replicas away under load: one drains (SIGTERM), one dies
// (SIGKILL), both come back. No request may fail, and the load must spread
// evenly over the live replicas.
//
// Replicas listen on 127.0.0.2, .3 and .4 with the same port, as pods of a
// headless Service do. GCNSERVE_SCALEOUT_PHASE (default 1.5s) sets how long
// each measured phase lasts; bench/scaleout.sh runs it longer.
package scaleout

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/stats"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// ServiceConfig is the client configuration README "Scaling out" documents:
// round_robin over every address the resolver returns (the headless
// Service's pods), client-side health checking so a draining replica
// (NOT_SERVING) gets no new calls, wait-for-ready, and a retry policy for
// UNAVAILABLE (a replica that died with calls in flight).
const ServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{
    "name": [{"service": "GCNService"}],
    "waitForReady": true,
    "timeout": "10s",
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.02s",
      "maxBackoff": "0.5s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Test settings: short drain so CI stays in seconds.
const (
	drainDelay    = "1s"
	shutdownGrace = "5s"
	workers       = 8
	spreadLimit   = 0.20 // each live replica within ±20% of their mean
)

func phase() time.Duration {
	if v := os.Getenv("GCNSERVE_SCALEOUT_PHASE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return 1500 * time.Millisecond
}

// attempts counts call attempts (first tries and retries) through the
// client's stats handler.
type attempts struct{ n atomic.Int64 }

func (a *attempts) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attempts) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		a.n.Add(1)
	}
}
func (a *attempts) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (a *attempts) HandleConn(context.Context, stats.ConnStats)                       {}

// load sends the karate request from workers goroutines until stopped and
// counts the answers per replica.
type load struct {
	mu       sync.Mutex
	byAddr   map[string]int // guarded by mu
	failures []error        // guarded by mu
	wrong    int            // answers with the wrong scores; guarded by mu
	ok       atomic.Int64
}

func (l *load) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]int, len(l.byAddr))
	for k, v := range l.byAddr {
		m[k] = v
	}
	return m
}

func (l *load) run(ctx context.Context, client gcnpb.GCNServiceClient, fx golden.Fixture, wg *sync.WaitGroup) {
	defer wg.Done()
	for ctx.Err() == nil {
		var p peer.Peer
		res, err := client.ProcessGraph(context.Background(), fx.Request, grpc.Peer(&p))
		l.mu.Lock()
		if err != nil {
			l.failures = append(l.failures, err)
		} else {
			host, _, _ := net.SplitHostPort(p.Addr.String())
			l.byAddr[host]++
			for i, n := range fx.Request.GetNodes() {
				if math.Abs(float64(res.GetNodeScores()[n.GetId()]-fx.Scores[i])) > 1e-5 {
					l.wrong++
					break
				}
			}
		}
		l.mu.Unlock()
		if err == nil {
			l.ok.Add(1)
		}
	}
}

// diff is after minus before, for the given hosts.
func diff(before, after map[string]int, hosts []string) map[string]int {
	d := map[string]int{}
	for _, h := range hosts {
		d[h] = after[h] - before[h]
	}
	return d
}

// spread is the largest relative deviation from the mean over hosts.
func spread(counts map[string]int) (worst float64, total int) {
	for _, c := range counts {
		total += c
	}
	mean := float64(total) / float64(len(counts))
	for _, c := range counts {
		worst = math.Max(worst, math.Abs(float64(c)-mean)/mean)
	}
	return worst, total
}

// freePort finds a port free on all three addresses.
func freePort(t *testing.T, hosts []string) string {
	t.Helper()
	for range 20 {
		lis, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			t.Fatalf("listen on %s: %v (this test needs the whole 127.0.0.0/8 loopback range, as Linux has)", hosts[0], err)
		}
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		lis.Close()
		free := true
		for _, h := range hosts[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(h, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on all replica addresses")
	return ""
}

func TestScaleOutZeroFailures(t *testing.T) {
	bin := servertest.Binary(t)
	root := testenv.RepoRoot(t)
	karate := golden.Read(t, filepath.Join(root, "model", "testdata", "karate", "karate.json"))

	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := freePort(t, hosts)
	args := []string{"--drain-delay", drainDelay, "--shutdown-grace", shutdownGrace, "--log-level", "warn"}
	replicas := make([]*servertest.Server, len(hosts))
	startReplica := func(i int) time.Duration {
		replicas[i] = servertest.Launch(t, servertest.Options{Binary: bin, Dir: root, Addr: net.JoinHostPort(hosts[i], port), Args: args})
		return replicas[i].WaitServing(t, 30*time.Second)
	}
	for i := range hosts {
		startReplica(i)
	}

	// The client: a manual resolver stands in for DNS of a headless Service.
	res := manual.NewBuilderWithScheme("scaleout")
	var addrs []resolver.Address
	for _, h := range hosts {
		addrs = append(addrs, resolver.Address{Addr: net.JoinHostPort(h, port)})
	}
	res.InitialState(resolver.State{Addresses: addrs})
	counter := &attempts{}
	conn := servertest.Dial(t, "scaleout:///gcnserve", grpc.WithResolvers(res),
		grpc.WithDefaultServiceConfig(ServiceConfig), grpc.WithStatsHandler(counter),
		// Reconnect to a restarted replica within a second (the default
		// backoff grows to 2 minutes; on Kubernetes a new pod is a new address).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second}, MinConnectTimeout: time.Second}))
	defer conn.Close()
	client := gcnpb.NewGCNServiceClient(conn)

	l := &load{byAddr: map[string]int{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go l.run(ctx, client, karate, &wg)
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			stop()
			wg.Wait()
		}
	}
	defer stopLoad()

	// waitAll waits until every replica answered since snap (all subchannels READY).
	waitAll := func(snap map[string]int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			d := diff(snap, l.snapshot(), hosts)
			if d[hosts[0]] > 0 && d[hosts[1]] > 0 && d[hosts[2]] > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not every replica answers after 15s: %v", d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	measure := func(name string, live []string) string {
		t.Helper()
		before := l.snapshot()
		start := time.Now()
		time.Sleep(phase())
		counts := diff(before, l.snapshot(), live)
		worst, total := spread(counts)
		rate := float64(total) / time.Since(start).Seconds()
		line := fmt.Sprintf("%s: %d calls at %.0f/s over %v, per replica %v, worst deviation from the mean %.1f%%",
			name, total, rate, phase(), counts, 100*worst)
		t.Log(line)
		if worst > spreadLimit {
			t.Errorf("%s: load spread %v deviates %.0f%% from the mean, want within ±%.0f%%", name, counts, 100*worst, 100*spreadLimit)
		}
		return line
	}

	waitAll(map[string]int{})
	var figures []string
	figures = append(figures, measure("three replicas", hosts))

	// Drain replica 0 and kill replica 1 while the load runs.
	t0 := time.Now()
	replicas[0].Signal(t, syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	replicas[1].Signal(t, syscall.SIGKILL)
	<-replicas[1].Exited()
	figures = append(figures, measure("one replica left (one draining, one killed)", hosts[2:]))
	select {
	case <-replicas[0].Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the SIGTERMed replica did not exit within 30s")
	}
	drained := replicas[0].ExitedAt().Sub(t0)
	if err := replicas[0].ExitErr(); err != nil {
		t.Errorf("the drained replica exited with %v, want 0\n%s", err, replicas[0].Log())
	}
	if !strings.Contains(replicas[1].ExitErr().Error(), "killed") {
		t.Errorf("replica 1: %v, want killed", replicas[1].ExitErr())
	}

	// Both come back on their addresses.
	snap := l.snapshot()
	restart0, restart1 := startReplica(0), startReplica(1)
	waitAll(snap)
	figures = append(figures, measure("three replicas again after restarts", hosts))
	stopLoad()

	l.mu.Lock()
	defer l.mu.Unlock()
	calls := l.ok.Load() + int64(len(l.failures))
	retries := counter.n.Load() - calls
	summary := fmt.Sprintf("%d calls, %d failed, %d wrong scores, %d retried attempts; SIGTERM to exit %v; restarts to SERVING %v and %v",
		calls, len(l.failures), l.wrong, retries, drained.Round(time.Millisecond), restart0.Round(time.Millisecond), restart1.Round(time.Millisecond))
	t.Log(summary)
	if len(l.failures) > 0 {
		t.Errorf("%d of %d calls failed; first: %v", len(l.failures), calls, l.failures[0])
	}
	if l.wrong > 0 {
		t.Errorf("%d answers did not match PyTorch's scores", l.wrong)
	}
	if out := os.Getenv("GCNSERVE_SCALEOUT_REPORT"); out != "" {
		os.WriteFile(out, []byte(strings.Join(append(figures, summary), "\n")+"\n"), 0o644)
	}
}
