// Package hostilegrpc attacks the real gcnserve binary over gRPC as issue 16
// did, with clients written for the purpose (raw HTTP/2 frames, gzip
// bombs, stalled streams, huge names), and checks that the server's memory
// stays bounded, a stalled client cannot starve others, and echoed input
// stays short. Memory is peak RSS (VmHWM from /proc).
//
// HOSTILEGRPC_BINARY, when set, runs another gcnserve build instead of the
// one servertest builds (e.g. main's, to measure the old behaviour); the
// new settings are passed as environment twins, which an older binary
// ignores.
package hostilegrpc

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/gen/inferencepb"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// start runs gcnserve with args and env (the ONNX Runtime library tests
// use is added) and waits for SERVING.
func start(t *testing.T, env []string, args ...string) *servertest.Server {
	t.Helper()
	env = append([]string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)}, env...)
	return servertest.Run(t, servertest.Options{Binary: os.Getenv("HOSTILEGRPC_BINARY"), Env: env, Args: args, Timeout: 30 * time.Second})
}

// karate is the bundled example request.
func karate(t *testing.T) *gcnpb.GraphData {
	t.Helper()
	return golden.Read(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate", "karate.json")).Request
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Bomb parameters: issue 16's attack, 16 Health/Check and 16 ListModels
// calls, each a gzip-compressed 63 MB message (about 61 KB on the wire),
// without a token. bdb1796 inflated every one: peak RSS grew by 3.7 GB.
const (
	bombCalls     = 16
	bombBytes     = 63_000_000
	bombMaxGrowth = 64 << 20
)

// TestGzipBombWithoutToken: the server refuses ListModels before reading
// its message (no token), refuses the health checks at their few-KB limit
// without inflating them, and its peak RSS grows by less than 64 MiB.
func TestGzipBombWithoutToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("secret-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, "--auth-token-file", tokens, "--max-inflight-bytes", fmt.Sprint(512<<20))
	bomb := testenv.GzipBomb(t, 1, bombBytes) // field 1: HealthCheckRequest.service; unknown to ListModelsRequest
	t.Logf("bomb: %d bytes inflating to %d", len(bomb), bombBytes)
	time.Sleep(200 * time.Millisecond)
	baseline := p.Memory(t, "VmHWM")

	type call struct {
		method string
		end    streamEnd
		ok     bool
	}
	calls := make([]call, 2*bombCalls)
	var wg sync.WaitGroup
	for i := range calls {
		calls[i].method = "/grpc.health.v1.Health/Check"
		if i%2 == 1 {
			calls[i].method = gcnpb.GCNService_ListModels_FullMethodName
		}
	}
	// One connection each, so every message fits the initial windows.
	conns := make([]*rawConn, len(calls))
	for i := range conns {
		conns[i] = dialRaw(t, p.Addr)
	}
	frame := grpcFrame(bomb, true)
	for i := range calls {
		rc := conns[i]
		id := rc.open(calls[i].method, "grpc-encoding", "gzip")
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc.send(id, frame, true)
			calls[i].end, calls[i].ok = rc.wait(id, 60*time.Second)
		}()
	}
	wg.Wait()
	peak := p.Memory(t, "VmHWM")
	growth := peak - baseline
	t.Logf("peak RSS %s, baseline %s: grew by %s (bound %s)", mib(peak), mib(baseline), mib(growth), mib(bombMaxGrowth))

	for _, c := range calls {
		switch {
		case !c.ok:
			t.Errorf("%s: no answer within 60s", c.method)
		case c.end.status == int(codes.OK):
			t.Errorf("%s with a 63 MB gzip bomb and no token: OK, want a refusal", c.method)
		case c.method == gcnpb.GCNService_ListModels_FullMethodName && c.end.status != int(codes.Unauthenticated):
			t.Errorf("%s without a token: status %d %q, want UNAUTHENTICATED", c.method, c.end.status, c.end.message)
		case strings.HasPrefix(c.method, "/grpc.health") && (c.end.status != int(codes.ResourceExhausted) || !strings.Contains(c.end.message, "limit of 4096 bytes")):
			t.Errorf("%s with a 63 MB gzip bomb: status %d %.200q, want RESOURCE_EXHAUSTED naming the method's 4096-byte limit", c.method, c.end.status, c.end.message)
		}
	}
	if growth > bombMaxGrowth {
		t.Errorf("peak RSS grew by %s under 32 gzip bombs without a token, want under %s", mib(growth), mib(bombMaxGrowth))
	}
	// The server still answers.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(servertest.Dial(t, p.Addr)).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the bombs: %v %v, want SERVING", res.GetStatus(), err)
	}
}

// Stall parameters: issue 16's attack, 5 streams that send HEADERS and a
// 5-byte prefix announcing a 60 MB message, then nothing, against a 1 GiB
// budget with the default 64 MiB --max-request-bytes. bdb1796 reserved
// 192 MiB for each before its first byte (960 MiB in all) and kept it until
// the connection's maximum age: a small request waited out --queue-timeout
// (5s) and got RESOURCE_EXHAUSTED.
const (
	stalledStreams = 5
	stallTimeout   = 3 * time.Second
)

// TestStalledStreams: with 5 stalled streams open, a small ProcessGraph is
// answered at once; the stalled streams are cut off (DEADLINE_EXCEEDED)
// after --request-read-timeout; the server caps streams per connection.
func TestStalledStreams(t *testing.T) {
	p := start(t, []string{"GCNSERVE_REQUEST_READ_TIMEOUT=" + stallTimeout.String()},
		"--max-inflight-bytes", fmt.Sprint(1<<30))
	// A health Watch has sent its one message: the read deadline must not
	// end it, however long it stays open.
	watchCtx, watchCancel := context.WithCancel(context.Background())
	defer watchCancel()
	watch, err := healthpb.NewHealthClient(servertest.Dial(t, p.Addr)).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	watchEnded := make(chan error, 1)
	go func() { _, err := watch.Recv(); watchEnded <- err }()

	rc := dialRaw(t, p.Addr)
	if rc.maxStreams != 100 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (0: not sent, unlimited), want 100 (--max-concurrent-streams)", rc.maxStreams)
	}
	prefix := grpcFrame(nil, false)
	binary.BigEndian.PutUint32(prefix[1:], 60_000_000) // announced, never sent
	opened := time.Now()
	ids := make([]uint32, stalledStreams)
	for i := range ids {
		ids[i] = rc.open(gcnpb.GCNService_ProcessGraph_FullMethodName)
		rc.send(ids[i], prefix, false)
	}
	time.Sleep(500 * time.Millisecond) // they are admitted and waiting for their bytes

	msg := karate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	began := time.Now()
	_, err = gcnpb.NewGCNServiceClient(servertest.Dial(t, p.Addr)).ProcessGraph(ctx, msg)
	took := time.Since(began)
	t.Logf("small ProcessGraph beside %d stalled streams: %v after %v", stalledStreams, status.Code(err), took.Round(time.Millisecond))
	if err != nil || took > 2*time.Second {
		t.Errorf("small ProcessGraph beside %d stalled streams: %v after %v, want OK within 2s", stalledStreams, err, took.Round(time.Millisecond))
	}

	for _, id := range ids {
		end, ok := rc.wait(id, stallTimeout+3*time.Second-time.Since(opened))
		if !ok {
			t.Errorf("stalled stream %d still open %v after it opened, want it cut off after --request-read-timeout %v", id, time.Since(opened).Round(time.Millisecond), stallTimeout)
			continue
		}
		after := end.at.Sub(opened)
		t.Logf("stalled stream %d cut off after %v: status %d %q reset %v", id, after.Round(time.Millisecond), end.status, end.message, end.reset)
		if after < stallTimeout-100*time.Millisecond {
			t.Errorf("stalled stream %d ended after %v, before --request-read-timeout %v", id, after, stallTimeout)
		}
		if end.status != int(codes.DeadlineExceeded) {
			t.Errorf("stalled stream %d: status %d %q (reset %v), want DEADLINE_EXCEEDED", id, end.status, end.message, end.reset)
		}
	}
	select {
	case err := <-watchEnded:
		t.Errorf("a health Watch open for %v ended: %v, want it open (its message arrived)", time.Since(opened).Round(time.Millisecond), err)
	default:
	}
}

// TestLongModelName: a 1 MiB model name is refused before lookup with a
// message that echoes at most 256 bytes of it and its length, and the
// server's log has no long line. bdb1796 copied it whole into the
// NOT_FOUND message and a warn line.
func TestLongModelName(t *testing.T) {
	p := start(t, nil)
	conn := servertest.Dial(t, p.Addr)
	client := gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	name := strings.Repeat("x", 1<<20)

	g := karate(t)
	g.ModelName = name
	_, err := client.ProcessGraph(ctx, g)
	msg := status.Convert(err).Message()
	t.Logf("ProcessGraph with a 1 MiB model_name: %v, message of %d bytes", status.Code(err), len(msg))
	if status.Code(err) != codes.InvalidArgument || len(msg) > 400 || !strings.Contains(msg, "(1048576 bytes)") {
		t.Errorf("ProcessGraph with a 1 MiB model_name: %v with a %d-byte message %.120q, want INVALID_ARGUMENT of at most 400 bytes giving the length", status.Code(err), len(msg), msg)
	}

	_, err = client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: name})
	msg = status.Convert(err).Message()
	t.Logf("GetModelInfo with a 1 MiB model_name: %v, message of %d bytes", status.Code(err), len(msg))
	if err == nil || len(msg) > 400 {
		t.Errorf("GetModelInfo with a 1 MiB model_name: %v with a %d-byte message, want a refusal of at most 400 bytes", status.Code(err), len(msg))
	}

	// Every method but the inference ones takes a few KB at most, and says
	// so with RESOURCE_EXHAUSTED.
	tenKB := strings.Repeat("y", 10<<10)
	_, err = inferencepb.NewGRPCInferenceServiceClient(conn).ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: tenKB})
	if msg := status.Convert(err).Message(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(msg, "limit of 4096 bytes") {
		t.Errorf("OIP ModelMetadata with a 10 KiB name: %v %.200q, want RESOURCE_EXHAUSTED naming the 4096-byte limit", status.Code(err), msg)
	}
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: tenKB})
	if msg := status.Convert(err).Message(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(msg, "limit of 4096 bytes") {
		t.Errorf("Health/Check with a 10 KiB service name: %v %.200q, want RESOURCE_EXHAUSTED naming the 4096-byte limit", status.Code(err), msg)
	}

	// The warn lines of those failures are written after the answers.
	time.Sleep(200 * time.Millisecond)
	longest := 0
	for line := range strings.SplitSeq(p.Log(), "\n") {
		longest = max(longest, len(line))
	}
	t.Logf("longest log line: %d bytes", longest)
	if longest > 8<<10 {
		t.Errorf("the server logged a line of %d bytes, want at most 8 KiB", longest)
	}
}

// TestStreamsPerConnection: a client that opens more calls on one
// connection than --max-concurrent-streams allows gets the extra ones
// refused (RST_STREAM REFUSED_STREAM) instead of the server holding them.
// bdb1796 advertised no limit and took them all.
func TestStreamsPerConnection(t *testing.T) {
	p := start(t, []string{"GCNSERVE_MAX_CONCURRENT_STREAMS=2"})
	rc := dialRaw(t, p.Addr)
	if rc.maxStreams != 2 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 2", rc.maxStreams)
	}
	ids := make([]uint32, 3)
	for i := range ids {
		ids[i] = rc.open("/grpc.health.v1.Health/Check")
		rc.send(ids[i], grpcFrame(nil, false)[:3], false) // part of a prefix, then nothing
	}
	end, ok := rc.wait(ids[2], 5*time.Second)
	if !ok || end.reset != http2.ErrCodeRefusedStream {
		t.Errorf("third call on a connection allowing 2: ended %v (%+v), want RST_STREAM REFUSED_STREAM", ok, end)
	}
	for _, id := range ids[:2] {
		if end, ok := rc.wait(id, 100*time.Millisecond); ok {
			t.Errorf("call %d within the limit ended: %+v, want it open", id, end)
		}
	}
}
