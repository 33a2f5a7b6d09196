package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sleepService is a fake unary service for lifecycle tests: Sleep holds the
// call for the duration the client names in its metadata-free way: the
// server's sleep field.
type sleepService struct{ sleep atomic.Int64 }

var sleepDesc = grpc.ServiceDesc{
	ServiceName: "test.Sleep",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Sleep",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				select {
				case <-time.After(time.Duration(srv.(*sleepService).sleep.Load())):
					return &emptypb.Empty{}, nil
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Sleep/Sleep"}, h)
		},
	}},
}

// lifecycleServer is a gRPC server on loopback wired as Run wires it.
type lifecycleServer struct {
	lc      *Lifecycle
	sleep   *sleepService
	conn    *grpc.ClientConn
	signals chan os.Signal
	logs    *syncBuffer
	exits   chan int
	waited  chan error
}

func startLifecycle(t *testing.T, drainDelay, grace time.Duration, reload func(context.Context) error) *lifecycleServer {
	t.Helper()
	logs := &syncBuffer{}
	ls := &lifecycleServer{sleep: &sleepService{}, signals: make(chan os.Signal, 4), logs: logs,
		exits: make(chan int, 1), waited: make(chan error, 1)}
	hs := health.NewServer()
	ls.lc = &Lifecycle{
		Log: slog.New(slog.NewTextHandler(logs, nil)), DrainDelay: drainDelay, ShutdownGrace: grace,
		Health: hs, Reload: reload, Signals: ls.signals, Exit: func(code int) { ls.exits <- code },
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(ls.lc.UnaryInterceptor()), grpc.ChainStreamInterceptor(ls.lc.StreamInterceptor()))
	ls.lc.GRPC = srv
	srv.RegisterService(&sleepDesc, ls.sleep)
	healthpb.RegisterHealthServer(srv, ls.lc.HealthService())
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("GCNService", healthpb.HealthCheckResponse_SERVING)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		if err := srv.Serve(lis); err != nil {
			served <- err
		}
	}()
	go func() { ls.waited <- ls.lc.Wait(context.Background(), served) }()
	ls.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ls.conn.Close()
		srv.Stop()
		if t.Failed() {
			t.Logf("lifecycle log:\n%s", logs)
		}
	})
	return ls
}

func (ls *lifecycleServer) call(ctx context.Context) error {
	return ls.conn.Invoke(ctx, "/test.Sleep/Sleep", &emptypb.Empty{}, &emptypb.Empty{})
}

func (ls *lifecycleServer) health(t *testing.T, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	res, err := healthpb.NewHealthClient(ls.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check %q: %v", service, err)
	}
	return res.Status
}

func (ls *lifecycleServer) waitResult(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-ls.waited:
		return err
	case <-time.After(within):
		t.Fatalf("Wait still running after %v", within)
		return nil
	}
}

// TestDrain: after SIGTERM health says NOT_SERVING at once for every
// service, calls are still served for the drain delay, an open Watch stream
// sees NOT_SERVING and then ends without holding the stop, and the call in
// flight when the servers stop accepting completes.
func TestDrain(t *testing.T) {
	const drainDelay = 300 * time.Millisecond
	ls := startLifecycle(t, drainDelay, 10*time.Second, nil)
	ls.sleep.sleep.Store(int64(200 * time.Millisecond))
	watch, err := healthpb.NewHealthClient(ls.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch answer %v, %v; want SERVING", res, err)
	}

	start := time.Now()
	ls.signals <- syscall.SIGTERM
	// The watcher hears NOT_SERVING first, then its stream ends.
	res, err := watch.Recv()
	if err != nil || res.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after SIGTERM: %v, %v; want NOT_SERVING", res, err)
	}
	for _, svc := range []string{"", "GCNService"} {
		if got := ls.health(t, svc); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %q right after SIGTERM: %v, want NOT_SERVING", svc, got)
		}
	}
	// Calls made during the drain delay are served; the last one is still
	// in flight when the delay ends.
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ls.call(context.Background()); err != nil {
				failed.Add(1)
				t.Errorf("call %d during the drain delay: %v", i, err)
			}
		}()
		time.Sleep(drainDelay / 4)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch at the end of the drain delay: %v, want UNAVAILABLE", err)
	}
	if err := ls.waitResult(t, 5*time.Second); err != nil {
		t.Errorf("Wait = %v, want nil (a clean drain)", err)
	}
	wg.Wait()
	took := time.Since(start)
	if took < drainDelay || took > drainDelay+2*time.Second {
		t.Errorf("shutdown took %v, want the %v drain delay plus the last call", took, drainDelay)
	}
	for _, want := range []string{"shutting down", "drain delay over", "stopped gracefully"} {
		if !strings.Contains(ls.logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestGraceRunsOut: a call that outlives the grace is cancelled, and Wait
// says how many were.
func TestGraceRunsOut(t *testing.T) {
	ls := startLifecycle(t, 0, 200*time.Millisecond, nil)
	ls.sleep.sleep.Store(int64(time.Hour))
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- ls.call(context.Background()) }()
	}
	for ls.lc.InFlight() < 2 {
		time.Sleep(time.Millisecond)
	}
	ls.signals <- syscall.SIGINT
	err := ls.waitResult(t, 5*time.Second)
	var grace *GraceError
	if !errors.As(err, &grace) || grace.Cancelled != 2 {
		t.Fatalf("Wait = %v, want a GraceError with 2 cancelled", err)
	}
	if ExitCode(err) != ExitFailure {
		t.Errorf("ExitCode = %d, want %d", ExitCode(err), ExitFailure)
	}
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a call cut by the grace succeeded")
		}
	}
	if !strings.Contains(ls.logs.String(), "cancelled=2") {
		t.Errorf("log does not say 2 calls were cancelled:\n%s", ls.logs)
	}
}

// TestSecondSignalExits: a second SIGTERM during the drain exits at once
// with ExitFailure.
func TestSecondSignalExits(t *testing.T) {
	ls := startLifecycle(t, time.Hour, time.Hour, nil)
	ls.signals <- syscall.SIGTERM
	ls.signals <- syscall.SIGTERM
	select {
	case code := <-ls.exits:
		if code != ExitFailure {
			t.Errorf("exit code %d, want %d", code, ExitFailure)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit 5s after the second signal")
	}
	if err := ls.waitResult(t, 5*time.Second); !errors.Is(err, errSecondSignal) || ExitCode(err) != ExitFailure {
		t.Errorf("Wait = %v, want errSecondSignal (exit %d)", err, ExitFailure)
	}
}

// TestSIGHUPReloads: SIGHUP runs the reload callback and the server keeps
// serving; a failed reload is logged and changes nothing.
func TestSIGHUPReloads(t *testing.T) {
	var reloads atomic.Int64
	ls := startLifecycle(t, 0, time.Second, func(context.Context) error {
		if reloads.Add(1) == 2 {
			return errors.New("model file is not ONNX")
		}
		return nil
	})
	for want := int64(1); want <= 2; want++ {
		ls.signals <- syscall.SIGHUP
		deadline := time.Now().Add(5 * time.Second)
		for reloads.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := ls.call(context.Background()); err != nil {
			t.Errorf("call after SIGHUP %d: %v", want, err)
		}
	}
	if got := ls.health(t, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after SIGHUP: %v, want SERVING", got)
	}
	ls.signals <- syscall.SIGTERM
	if err := ls.waitResult(t, 5*time.Second); err != nil {
		t.Errorf("Wait = %v, want nil", err)
	}
	log := ls.logs.String()
	for _, want := range []string{"SIGHUP: reloading", "reloaded", "reload failed", "not ONNX"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{&UsageError{errors.New("--max-nodes -5: want 0 to 2147483647")}, ExitUsage},
		{errors.New("load model"), ExitFailure},
		{&GraceError{Cancelled: 3}, ExitFailure},
	} {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestSecondSignalExitsWhileClosing: closing the models is the drain's last
// step, and a second SIGTERM while it hangs (a scan stuck on the model
// volume) exits at once. (Before, Run closed the models after Wait, when no
// one listened for a second signal: "stopped gracefully", then no exit.)
func TestSecondSignalExitsWhileClosing(t *testing.T) {
	ls := startLifecycle(t, 0, time.Second, nil)
	closing, unblock := make(chan struct{}), make(chan struct{})
	ls.lc.Close = func() error {
		close(closing)
		<-unblock
		return nil
	}
	ls.signals <- syscall.SIGTERM
	select {
	case <-closing:
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not close the models")
	}
	ls.signals <- syscall.SIGTERM
	select {
	case code := <-ls.exits:
		if code != ExitFailure {
			t.Errorf("exit code %d, want %d", code, ExitFailure)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGTERM while the models close was ignored")
	}
	close(unblock)
	ls.waitResult(t, 5*time.Second)
}

// TestReloadDoesNotHoldUpExit: a reload in progress is cancelled when the
// drain begins, and one that ignores its context is waited for at most
// reloadWait: SIGTERM after a SIGHUP that hangs still exits.
func TestReloadDoesNotHoldUpExit(t *testing.T) {
	defer func(d time.Duration) { reloadWait = d }(reloadWait)
	reloadWait = 100 * time.Millisecond
	started, cancelled := make(chan struct{}), make(chan struct{})
	forever := make(chan struct{})
	defer close(forever)
	ls := startLifecycle(t, 0, time.Second, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		close(cancelled)
		<-forever // and then hangs anyway
		return ctx.Err()
	})
	ls.signals <- syscall.SIGHUP
	<-started
	ls.signals <- syscall.SIGTERM
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not cancel the reload's context")
	}
	if err := ls.waitResult(t, 5*time.Second); err != nil {
		t.Errorf("Wait = %v, want nil", err)
	}
	if !strings.Contains(ls.logs.String(), "a reload is still running") {
		t.Errorf("log does not say a reload was left running:\n%s", ls.logs)
	}
}

// TestShutdownIsTheDrain: Shutdown runs the SIGTERM drain (health
// NOT_SERVING, in-flight calls finish, Close), once, and a Wait running at
// the same time returns the same result.
func TestShutdownIsTheDrain(t *testing.T) {
	ls := startLifecycle(t, 0, 5*time.Second, nil)
	var closes atomic.Int64
	ls.lc.Close = func() error { closes.Add(1); return nil }
	ls.sleep.sleep.Store(int64(200 * time.Millisecond))
	callErr := make(chan error, 1)
	go func() { callErr <- ls.call(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for ls.lc.InFlight() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := ls.lc.Shutdown(); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := <-callErr; err != nil {
		t.Errorf("the call in flight at Shutdown: %v, want it finished", err)
	}
	ls.signals <- syscall.SIGTERM // Wait's own drain is the same, already done
	if err := ls.waitResult(t, 5*time.Second); err != nil {
		t.Errorf("Wait = %v, want nil", err)
	}
	if n := closes.Load(); n != 1 {
		t.Errorf("Close ran %d times, want 1", n)
	}
}

// TestListenSignals: before the models are loaded, SIGHUP neither kills the
// process (the runtime's default) nor is lost: it is handed to Wait; SIGTERM
// exits at once.
func TestListenSignals(t *testing.T) {
	logs := &syncBuffer{}
	exits := make(chan int, 1)
	handOver, stop := ListenSignals(slog.New(slog.NewTextHandler(logs, nil)), func(code int) { exits <- code })
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "SIGHUP during start-up") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exits:
		if code != ExitFailure {
			t.Errorf("exit code %d on SIGTERM during start-up, want %d", code, ExitFailure)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM during start-up did not exit")
	}
	select {
	case sig := <-handOver():
		if sig != syscall.SIGHUP {
			t.Errorf("handed over %v, want the SIGHUP from start-up", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the SIGHUP from start-up was not handed over")
	}
}

// TestRunStopsHTTPWhenDebugListenerFails: when --debug-addr cannot listen,
// Run returns the error with nothing left serving (before, the HTTP
// listener it had started kept serving).
func TestRunStopsHTTPWhenDebugListenerFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := free.Addr().String()
	free.Close()
	cfg := testConfig(t)
	cfg.Addr = "127.0.0.1:0"
	cfg.HTTPAddr = httpAddr
	cfg.DebugAddr = taken.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Run(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "--debug-addr") {
		t.Fatalf("Run = %v, want the --debug-addr listen error", err)
	}
	if c, err := net.DialTimeout("tcp", httpAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("the --http-addr listener %s still accepts after Run returned", httpAddr)
	}
}
