package ops

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// Flood parameters. A Cora-sized request (2,708 nodes, 5,278 edges, 1,433
// bag-of-words features, as bench/run.sh's "cora" row) is 15.6 MB on the
// wire and holds about 31 MB once decoded.
const (
	floodRequests = 32
	floodBudget   = 160 << 20 // two requests at a time: serving.Cost puts one at 65.5 MiB
	// floodSlack is what the bound allows above baseline + budget: Go's
	// garbage collector lets the heap reach about twice the live bytes
	// before it collects (GOGC=100), so freed request buffers and tensors
	// can stay resident for one more budget; plus 64 MiB for gRPC's
	// per-stream receive buffers, ONNX Runtime's arenas and thread stacks.
	floodSlack = floodBudget + 64<<20
)

// TestFlood: 32 concurrent Cora-sized requests against a 160 MiB
// --max-inflight-bytes. Every answer is OK or RESOURCE_EXHAUSTED, peak RSS
// stays under baseline + budget + slack, and health answers throughout.
func TestFlood(t *testing.T) {
	p := start(t, nil, "--model", "model/cora.onnx",
		"--max-inflight-bytes", strconv.Itoa(floodBudget),
		"--max-request-bytes", strconv.Itoa(16<<20),
		"--max-queue", "16", "--queue-timeout", "3s")
	msg := graphwire.SyntheticBagOfWordsGraph(2708, 5278, 1433, 0.0127, 1)
	req, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	msg = nil
	// Warm up once (first-run allocations belong to the baseline), then
	// let the server's heap settle.
	conn := servertest.Dial(t, p.Addr)
	if _, err := processGraph(context.Background(), conn, req); err != nil {
		t.Fatalf("warm-up request: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	baseline := p.Memory(t, "VmHWM")

	// Health checks on their own connection, every 50 ms, through the flood.
	healthConn := servertest.Dial(t, p.Addr)
	stopHealth := make(chan struct{})
	var healthOK, healthBad atomic.Int64
	var healthWG sync.WaitGroup
	healthWG.Add(1)
	go func() {
		defer healthWG.Done()
		client := healthpb.NewHealthClient(healthConn)
		for {
			select {
			case <-stopHealth:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			res, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err == nil && res.Status == healthpb.HealthCheckResponse_SERVING {
				healthOK.Add(1)
			} else {
				healthBad.Add(1)
				t.Errorf("health during the flood: %v %v", res.GetStatus(), err)
			}
		}
	}()

	// 32 requests at once over 4 connections.
	conns := make([]*grpc.ClientConn, 4)
	for i := range conns {
		conns[i] = servertest.Dial(t, p.Addr)
	}
	var ok, exhausted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	floodStart := time.Now()
	for i := range floodRequests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			_, err := processGraph(ctx, conns[i%len(conns)], req)
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				exhausted.Add(1)
				if m := status.Convert(err).Message(); !strings.Contains(m, "--max-") && !strings.Contains(m, "--queue-timeout") {
					t.Errorf("RESOURCE_EXHAUSTED message %q names no flag", m)
				}
			default:
				t.Errorf("request %d: %v, want OK or RESOURCE_EXHAUSTED", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	took := time.Since(floodStart)
	close(stopHealth)
	healthWG.Wait()

	peak := p.Memory(t, "VmHWM")
	bound := baseline + floodBudget + floodSlack
	t.Logf("flood: %d requests of %s in %v: %d OK, %d RESOURCE_EXHAUSTED; peak RSS %s (baseline %s, budget %s, bound %s); health %d OK, %d failed",
		floodRequests, mib(int64(len(req))), took.Round(time.Millisecond), ok.Load(), exhausted.Load(),
		mib(peak), mib(baseline), mib(floodBudget), mib(bound), healthOK.Load(), healthBad.Load())
	if peak > bound {
		t.Errorf("peak RSS %s over the bound %s (baseline %s + budget %s + slack %s)",
			mib(peak), mib(bound), mib(baseline), mib(floodBudget), mib(floodSlack))
	}
	if ok.Load() == 0 {
		t.Error("no request succeeded: the budget admits two at once")
	}
	if exhausted.Load() == 0 {
		t.Error("no request was refused: the flood did not reach the budget")
	}
	if healthOK.Load() == 0 {
		t.Error("no health check answered during the flood")
	}
}

// loadResult is one call of a load loop.
type loadResult struct {
	start time.Time
	err   error
}

// load sends karate requests from workers goroutines until stop closes.
func load(t *testing.T, addr string, workers int, req []byte, stop <-chan struct{}) <-chan []loadResult {
	t.Helper()
	out := make(chan []loadResult, 1)
	conn := servertest.Dial(t, addr)
	go func() {
		var mu sync.Mutex
		var all []loadResult
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := processGraph(ctx, conn, req)
					cancel()
					mu.Lock()
					all = append(all, loadResult{start, err})
					mu.Unlock()
					if err != nil {
						time.Sleep(5 * time.Millisecond) // the server is gone: do not spin
					}
				}
			}()
		}
		wg.Wait()
		out <- all
	}()
	return out
}

// TestDrainUnderLoad: SIGTERM while clients keep sending. Health turns
// NOT_SERVING at once; every call started before the drain delay ended
// succeeds; an open Watch stream does not hold the exit; exit code 0.
func TestDrainUnderLoad(t *testing.T) {
	const drainDelay = time.Second
	p := start(t, nil, "--drain-delay", drainDelay.String(), "--shutdown-grace", "20s")
	conn := servertest.Dial(t, p.Addr)
	watch, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v %v, want SERVING", res, err)
	}
	stop := make(chan struct{})
	results := load(t, p.Addr, 4, karateRequest(t), stop)
	time.Sleep(300 * time.Millisecond)

	sigterm := time.Now()
	p.Signal(t, syscall.SIGTERM)
	res, err := watch.Recv()
	if err != nil || res.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch after SIGTERM: %v %v, want NOT_SERVING", res, err)
	}
	if ms := time.Since(sigterm).Milliseconds(); ms > 500 {
		t.Errorf("NOT_SERVING came %d ms after SIGTERM, want at once", ms)
	}
	code := p.ExitCode(t, 15*time.Second)
	exited := time.Since(sigterm)
	close(stop)
	all := <-results

	// A call that starts on the client before sigterm+drainDelay reaches
	// the server before its drain ends (the server's delay starts when it
	// gets the signal, after sigterm); 100 ms covers the trip on a loaded
	// machine.
	cutoff := sigterm.Add(drainDelay - 100*time.Millisecond)
	var before, beforeFailed, during, after int
	for _, r := range all {
		switch {
		case r.start.Before(cutoff):
			before++
			if r.start.After(sigterm) {
				during++
			}
			if r.err != nil {
				beforeFailed++
				t.Errorf("call started %v after SIGTERM (drain delay %v): %v", r.start.Sub(sigterm).Round(time.Millisecond), drainDelay, r.err)
			}
		default:
			after++
		}
	}
	t.Logf("drain: %d calls started before the drain delay ended (%d of them after SIGTERM), %d failed; %d started later; exit %d after %v",
		before, during, beforeFailed, after, code, exited.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if during == 0 {
		t.Error("no call was made during the drain delay: the test proved nothing")
	}
	// The Watch stream stays open on the client; with it holding shutdown
	// the exit would come after the 20 s grace.
	if exited > drainDelay+5*time.Second {
		t.Errorf("exit %v after SIGTERM, want about the %v drain delay (the Watch stream held it?)", exited, drainDelay)
	}
	if log := p.Log(); !strings.Contains(log, "stopped gracefully") {
		t.Errorf("log lacks %q", "stopped gracefully")
	}
}

// TestGraceRunsOut: a call that outlives --shutdown-grace is cancelled,
// the log says how many were, and the exit code is 1.
func TestGraceRunsOut(t *testing.T) {
	p := start(t, nil, "--model", "model/cora.onnx", "--drain-delay", "0s", "--shutdown-grace", "1ms",
		"--max-request-bytes", strconv.Itoa(64<<20))
	req, err := proto.Marshal(graphwire.SyntheticBagOfWordsGraph(2708*3, 5278*3, 1433, 0.0127, 2))
	if err != nil {
		t.Fatal(err)
	}
	conn := servertest.Dial(t, p.Addr)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := processGraph(context.Background(), conn, req)
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // both are being sent or served
	p.Signal(t, syscall.SIGTERM)
	if code := p.ExitCode(t, 15*time.Second); code != 1 {
		t.Errorf("exit code %d, want 1 (the grace ran out)", code)
	}
	if log := p.Log(); !strings.Contains(log, "shutdown grace ran out") || !strings.Contains(log, "cancelled=") {
		t.Errorf("log does not say how many calls were cancelled:\n%s", log)
	}
}

// TestSecondSignalExits: a second SIGTERM during the drain exits at once
// with code 1.
func TestSecondSignalExits(t *testing.T) {
	p := start(t, nil, "--drain-delay", "30s")
	p.Signal(t, syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	sent := time.Now()
	p.Signal(t, syscall.SIGINT)
	if code := p.ExitCode(t, 5*time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if d := time.Since(sent); d > 2*time.Second {
		t.Errorf("exit %v after the second signal, want at once", d)
	}
}

// TestSIGHUPUnderLoad: SIGHUP reloads the model while clients send; no call
// fails and the process keeps its pid.
func TestSIGHUPUnderLoad(t *testing.T) {
	p := start(t, nil)
	pid := p.Pid
	stop := make(chan struct{})
	results := load(t, p.Addr, 4, karateRequest(t), stop)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		p.Signal(t, syscall.SIGHUP)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	all := <-results
	failed := 0
	for _, r := range all {
		if r.err != nil {
			failed++
			if failed < 5 {
				t.Errorf("call during SIGHUPs: %v", r.err)
			}
		}
	}
	select {
	case <-p.Exited():
		t.Fatalf("gcnserve exited after SIGHUP: %v", p.ExitErr())
	default:
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("pid %d gone after SIGHUP: %v", pid, err)
	}
	log := p.Log()
	if n := strings.Count(log, "SIGHUP"); n < 1 {
		t.Errorf("log has no SIGHUP line:\n%s", log)
	}
	t.Logf("SIGHUP x3 under load: %d calls, %d failed, pid %d kept; reload lines: %d", len(all), failed,
		pid, strings.Count(log, "reloaded"))
	p.Signal(t, syscall.SIGTERM)
	if code := p.ExitCode(t, 15*time.Second); code != 0 {
		t.Errorf("exit after SIGTERM: %d, want 0", code)
	}
}

// TestBadFlags: every out-of-range value exits 2 with one line naming the
// flag (or its environment twin), the value and the allowed range.
func TestBadFlags(t *testing.T) {
	bin := servertest.Binary(t)
	tests := []struct {
		args []string
		env  string
		want []string
	}{
		{[]string{"--max-request-bytes", "0"}, "", []string{"--max-request-bytes", "0", "1024 to 2147483647"}},
		{[]string{"--max-request-bytes", "-1"}, "", []string{"--max-request-bytes", "-1"}},
		{[]string{"--max-nodes", "-5"}, "", []string{"--max-nodes", "-5", "0 to"}},
		{[]string{"--max-edges", "-1"}, "", []string{"--max-edges", "-1"}},
		{[]string{"--max-inflight-bytes", "-1"}, "", []string{"--max-inflight-bytes", "-1"}},
		{[]string{"--max-inflight-bytes", "1000"}, "", []string{"--max-inflight-bytes", "1000", "0 or 1048576 to"}},
		{[]string{"--max-queue", "-1"}, "", []string{"--max-queue", "-1"}},
		{[]string{"--queue-timeout", "-1s"}, "", []string{"--queue-timeout", "-1s"}},
		{[]string{"--drain-delay", "-1s"}, "", []string{"--drain-delay", "-1s"}},
		{[]string{"--shutdown-grace", "-5s"}, "", []string{"--shutdown-grace", "-5s"}},
		{[]string{"--intra-op-threads", "0"}, "", []string{"--intra-op-threads", "0"}},
		{[]string{"--max-concurrent-runs", "-2"}, "", []string{"--max-concurrent-runs", "-2"}},
		{[]string{"--batch-max-nodes", "0"}, "", []string{"--batch-max-nodes", "0"}},
		{[]string{"--batch-max-delay", "-1ms"}, "", []string{"--batch-max-delay", "-1ms"}},
		{nil, "GCNSERVE_MAX_NODES=-5", []string{"GCNSERVE_MAX_NODES", "-5", "0 to"}},
		{nil, "GCNSERVE_MAX_REQUEST_BYTES=0", []string{"GCNSERVE_MAX_REQUEST_BYTES", "0"}},
		{[]string{"--repository-poll-interval", "-10s"}, "", []string{"--repository-poll-interval", "-10s"}},
		{nil, "GCNSERVE_QUEUE_TIMEOUT=-2s", []string{"GCNSERVE_QUEUE_TIMEOUT", "-2s"}},
		{[]string{"--max-nodes", "many"}, "", []string{"max-nodes", "many"}},
	}
	for _, tt := range tests {
		name := strings.Join(tt.args, " ") + tt.env
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"--addr", servertest.FreeAddr(t)}, tt.args...)...)
			cmd.Dir = testenv.RepoRoot(t)
			cmd.Env = os.Environ()
			if tt.env != "" {
				cmd.Env = append(cmd.Env, tt.env)
			}
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatal("still running after 20s: the value was accepted")
			}
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			for _, want := range tt.want {
				if !strings.Contains(last, want) {
					t.Errorf("last line %q lacks %q", last, want)
				}
			}
		})
	}
}

// TestAuth: with --auth-token-file, a call without a token or with a wrong
// one is UNAUTHENTICATED, the right token works, health and reflection need
// none, a rotated file takes effect without a restart, and no token reaches
// the log.
func TestAuth(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# test tokens\nfirst-token-abc\n\nsecond-token-xyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := servertest.FreeAddr(t)
	p := start(t, nil, "--auth-token-file", tokens, "--http-addr", httpAddr)
	conn := servertest.Dial(t, p.Addr)
	req := karateRequest(t)
	call := func(token string) error {
		ctx := context.Background()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", token)
		}
		_, err := processGraph(ctx, conn, req)
		return err
	}
	tests := []struct {
		name, header string
		code         codes.Code
		msg          string
	}{
		{"no token", "", codes.Unauthenticated, "missing bearer token"},
		{"wrong token", "Bearer first-token-abd", codes.Unauthenticated, "invalid bearer token"},
		{"not bearer", "Basic Zmlyc3QtdG9rZW4tYWJj", codes.Unauthenticated, "missing bearer token"},
		{"first token", "Bearer first-token-abc", codes.OK, ""},
		{"second token", "bearer second-token-xyz", codes.OK, ""},
	}
	for _, tt := range tests {
		err := call(tt.header)
		if status.Code(err) != tt.code || (tt.msg != "" && status.Convert(err).Message() != tt.msg) {
			t.Errorf("%s: %v, want %v %q", tt.name, err, tt.code, tt.msg)
		}
	}
	// GetModelInfo is guarded too.
	if _, err := gcnpb.NewGCNServiceClient(conn).GetModelInfo(context.Background(), &gcnpb.ModelInfoRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetModelInfo without a token: %v, want UNAUTHENTICATED", err)
	}
	// Health and reflection need no token.
	if res, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without a token: %v %v, want SERVING", res.GetStatus(), err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err == nil {
		err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Errorf("reflection without a token: %v", err)
	}

	// HTTP: 401 with a Bearer challenge; health paths open.
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "wrong", http.StatusUnauthorized},
		{"/metrics", "first-token-abc", http.StatusOK},
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
	} {
		hreq, _ := http.NewRequest("GET", "http://"+httpAddr+tc.path, nil)
		if tc.token != "" {
			hreq.Header.Set("Authorization", "Bearer "+tc.token)
		}
		res, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Errorf("GET %s: %v", tc.path, err)
			continue
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, res.StatusCode, tc.want)
		}
		if tc.want == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s: WWW-Authenticate %q, want a Bearer challenge", tc.path, res.Header.Get("WWW-Authenticate"))
		}
	}

	// Rotation: replace the file; the old token stops working, the new one works.
	tmp := tokens + ".new"
	if err := os.WriteFile(tmp, []byte("rotated-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tokens); err != nil {
		t.Fatal(err)
	}
	if err := call("Bearer first-token-abc"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("old token after rotation: %v, want UNAUTHENTICATED", err)
	}
	if err := call("Bearer rotated-token-123"); err != nil {
		t.Errorf("new token after rotation: %v", err)
	}
	for _, secret := range []string{"first-token-abc", "second-token-xyz", "rotated-token-123"} {
		if strings.Contains(p.Log(), secret) {
			t.Errorf("the log shows a token (%s)", secret)
		}
	}
}

// TestGetModelInfoGarbage: bytes that are not a ModelInfoRequest get
// INVALID_ARGUMENT, as ProcessGraph's do, not INTERNAL.
func TestGetModelInfoGarbage(t *testing.T) {
	p := start(t, nil)
	conn := servertest.Dial(t, p.Addr)
	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	var res []byte
	err := conn.Invoke(context.Background(), gcnpb.GCNService_GetModelInfo_FullMethodName, &garbage, &res, grpc.ForceCodecV2(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetModelInfo with garbage: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := processGraph(context.Background(), conn, garbage); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ProcessGraph with garbage: %v, want INVALID_ARGUMENT", err)
	}
}
