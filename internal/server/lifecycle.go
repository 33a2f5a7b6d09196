package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Exit codes of gcnserve, one per class of failure (README "Exit codes").
const (
	// ExitOK: a clean shutdown; every in-flight call finished.
	ExitOK = 0
	// ExitFailure: the model or ONNX Runtime failed to load, a listener
	// failed, the shutdown grace ran out and calls were cancelled, or a
	// second signal cut the drain short.
	ExitFailure = 1
	// ExitUsage: a bad flag, environment variable or value out of range.
	ExitUsage = 2
)

// UsageError is a configuration the server refuses to start with (a bad
// flag or value); gcnserve exits with ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode returns the process exit code for Run's (or flag parsing's)
// error.
func ExitCode(err error) int {
	var usage *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage):
		return ExitUsage
	}
	return ExitFailure
}

// GraceError says the shutdown grace ran out and in-flight calls were
// cancelled.
type GraceError struct {
	Grace     time.Duration
	Cancelled int64
}

func (e *GraceError) Error() string {
	return fmt.Sprintf("shutdown grace (%s, --shutdown-grace) ran out: cancelled %d in-flight calls", e.Grace, e.Cancelled)
}

// Lifecycle runs the server's life after start-up: it serves SIGHUP
// reloads, and on SIGTERM or SIGINT (or the end of Run's context) drains:
//
//  1. health turns NOT_SERVING for every service name at once, so load
//     balancers and Kubernetes stop sending;
//  2. for DrainDelay the listeners stay open and new calls are served as
//     usual: clients that have not seen the change yet lose nothing;
//  3. Health/Watch streams end (UNAVAILABLE), so they never hold what
//     follows, and the servers stop accepting (gRPC GracefulStop, HTTP
//     Shutdown); in-flight calls get ShutdownGrace to finish;
//  4. when the grace runs out the rest are cancelled, a line says how
//     many, and Wait returns a *GraceError (exit 1);
//  5. Close closes the models.
//
// A second SIGTERM or SIGINT at any step, Close included, exits at once
// with ExitFailure. A reload in progress is cancelled when the drain begins
// and waited for at most reloadWait. SIGHUP never stops the server.
// Shutdown runs the same drain (tests, embedders): there is one way down.
//
// Use: build it, register HealthService() instead of the health server
// itself, add UnaryInterceptor/StreamInterceptor to the gRPC server and
// wrap HTTP handlers with HTTPMiddleware (they count in-flight calls),
// start serving, then call Wait.
type Lifecycle struct {
	// Log receives the lifecycle's lines. Default slog.Default().
	Log *slog.Logger
	// DrainDelay is step 2's length (--drain-delay).
	DrainDelay time.Duration
	// ShutdownGrace is step 3's bound (--shutdown-grace).
	ShutdownGrace time.Duration
	// Health is the health server whose statuses turn NOT_SERVING.
	Health *health.Server
	// GRPC is the gRPC server to stop.
	GRPC *grpc.Server
	// HTTP are the HTTP servers to shut down with it (REST, debug).
	HTTP []*http.Server
	// Reload runs on SIGHUP: re-read the model repository, or re-open the
	// --model file. nil: SIGHUP is logged and ignored. Its error is logged;
	// the server keeps serving what it served.
	Reload func(context.Context) error
	// Close, if not nil, runs once the servers have stopped: it closes the
	// model repository. A second signal during it still exits at once.
	Close func() error
	// Signals, if not nil, replaces the process's signals (tests, and Run,
	// which listens from before the models load: see ListenSignals).
	Signals <-chan os.Signal
	// Exit ends the process on a second signal. Default os.Exit.
	Exit func(code int)

	inFlight atomic.Int64
	initOnce sync.Once
	stopping chan struct{} // closed when the servers stop accepting
	// aborted is closed after a second signal, in case Exit returns (tests).
	aborted chan struct{}
	// drainOnce runs the one shutdown path once, whether Wait (a signal, the
	// end of its context) or Shutdown (tests, embedders) starts it;
	// drainErr is its result.
	drainOnce sync.Once
	drainErr  error
}

// reloadWait bounds how long shutdown waits for a reload in progress (it is
// cancelled when the drain begins) before it goes on without it. A variable
// for the tests.
var reloadWait = 5 * time.Second

// errSecondSignal is Wait's answer when a second signal cut the drain short
// and Exit returned.
var errSecondSignal = errors.New("second signal during shutdown")

func (l *Lifecycle) init() {
	l.initOnce.Do(func() {
		l.stopping = make(chan struct{})
		l.aborted = make(chan struct{})
		if l.Log == nil {
			l.Log = slog.Default()
		}
		if l.Exit == nil {
			l.Exit = os.Exit
		}
	})
}

// InFlight returns the calls being served now (Health/Watch excluded).
func (l *Lifecycle) InFlight() int64 { return l.inFlight.Load() }

// UnaryInterceptor counts in-flight unary calls.
func (l *Lifecycle) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		l.inFlight.Add(1)
		defer l.inFlight.Add(-1)
		return handler(ctx, req)
	}
}

// StreamInterceptor counts in-flight streaming calls, except health
// watches, which end by themselves when draining stops accepting.
func (l *Lifecycle) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod != healthpb.Health_Watch_FullMethodName {
			l.inFlight.Add(1)
			defer l.inFlight.Add(-1)
		}
		return handler(srv, ss)
	}
}

// HTTPMiddleware counts in-flight HTTP requests.
func (l *Lifecycle) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.inFlight.Add(1)
		defer l.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// HealthService is l.Health as registered on the gRPC server, except that
// Watch streams end when the drain stops accepting calls: grpc-go's own
// Watch runs until the client leaves, and GracefulStop would wait for it.
func (l *Lifecycle) HealthService() healthpb.HealthServer {
	l.init()
	return drainingHealth{Server: l.Health, stopping: l.stopping}
}

type drainingHealth struct {
	*health.Server
	stopping <-chan struct{}
}

var errShuttingDown = status.Error(codes.Unavailable, "server is shutting down")

func (h drainingHealth) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	select {
	case <-h.stopping:
		return errShuttingDown
	default:
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := h.Server.Watch(req, watchStream{stream, ctx})
	select {
	case <-h.stopping:
		return errShuttingDown
	default:
		return err
	}
}

// watchStream is a Watch stream with a context that also ends when
// draining stops accepting.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (s watchStream) Context() context.Context { return s.ctx }

// Wait serves SIGHUP reloads until SIGTERM, SIGINT or the end of ctx, then
// drains (see Lifecycle) and returns nil when every call finished, or a
// *GraceError. served delivers the servers' own failure (a listener
// error): Wait then stops the rest at once and returns it.
func (l *Lifecycle) Wait(ctx context.Context, served <-chan error) error {
	l.init()
	sigs := l.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(ch)
		sigs = ch
	}
	reloads := make(chan struct{}, 1)
	reloadDone := make(chan struct{})
	// A reload in progress is cancelled when the drain begins, and waited
	// for at most reloadWait: a reload never holds up the exit.
	reloadCtx, cancelReload := context.WithCancel(ctx)
	go l.reloadLoop(reloadCtx, reloads, reloadDone)
	defer func() {
		cancelReload()
		close(reloads)
		select {
		case <-reloadDone:
		case <-time.After(reloadWait):
			l.Log.Warn("a reload is still running (blocked on the model volume?); exiting without it")
		}
	}()

	var cause any
wait:
	for {
		select {
		case err := <-served:
			l.Log.Error("server failed; stopping", "err", err)
			l.stopNow()
			return errors.Join(err, l.closeModels())
		case <-ctx.Done():
			cause = context.Cause(ctx)
			break wait
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				select {
				case reloads <- struct{}{}:
				default: // a reload is already pending: it will see the change
				}
				continue
			}
			cause = sig
			break wait
		}
	}

	cancelReload()
	// From here on, until Wait returns (the servers stopped and Close ran),
	// a second stop signal exits at once.
	drained := make(chan struct{})
	defer close(drained)
	go func() {
		for {
			select {
			case <-drained:
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					l.Log.Info("SIGHUP during shutdown: ignored")
					continue
				}
				l.Log.Error("second signal during shutdown: exiting now", "signal", sig.String(), "in_flight", l.inFlight.Load())
				l.Exit(ExitFailure)
				close(l.aborted)
				return
			}
		}
	}()
	return l.drain(cause)
}

// reloadLoop runs Reload once per SIGHUP, one at a time; SIGHUPs that come
// during a reload are folded into one more.
func (l *Lifecycle) reloadLoop(ctx context.Context, reloads <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for range reloads {
		if l.Reload == nil {
			l.Log.Info("SIGHUP: nothing to reload")
			continue
		}
		l.Log.Info("SIGHUP: reloading")
		start := time.Now()
		if err := l.Reload(ctx); err != nil {
			l.Log.Error("reload failed; still serving what was loaded before", "err", err)
			continue
		}
		l.Log.Info("reloaded", "took", time.Since(start).Round(time.Millisecond))
	}
}

// Shutdown drains as a SIGTERM does (the same path: health NOT_SERVING,
// DrainDelay, stop accepting, ShutdownGrace, Close) and returns Wait's
// error. Wait, if running, returns the same result.
func (l *Lifecycle) Shutdown() error {
	l.init()
	return l.drain("Shutdown")
}

// drain runs stopServers and then Close, once.
func (l *Lifecycle) drain(cause any) error {
	l.drainOnce.Do(func() {
		l.drainErr = errors.Join(l.stopServers(cause), l.closeModels())
	})
	return l.drainErr
}

// closeModels runs Close, if set, and logs its error.
func (l *Lifecycle) closeModels() error {
	if l.Close == nil {
		return nil
	}
	err := l.Close()
	if err != nil {
		l.Log.Error("closing the models after the servers stopped", "err", err)
	}
	return err
}

// stopServers is the drain's part that stops the listeners (see Lifecycle).
func (l *Lifecycle) stopServers(cause any) error {
	l.Log.Info("shutting down: health NOT_SERVING, still serving for the drain delay",
		"cause", fmt.Sprint(cause), "drain_delay", l.DrainDelay, "shutdown_grace", l.ShutdownGrace)
	// Shutdown sets every registered service name NOT_SERVING and keeps it
	// so: a later SetServingStatus (a model swap) cannot turn it back.
	l.Health.Shutdown()
	delay := time.NewTimer(l.DrainDelay)
	defer delay.Stop()
	select {
	case <-delay.C:
	case <-l.aborted:
		l.stopNow()
		return errSecondSignal
	}
	inFlight := l.inFlight.Load()
	l.Log.Info("drain delay over: no new connections; finishing in-flight calls", "in_flight", inFlight)
	close(l.stopping)

	graceCtx, cancel := context.WithTimeout(context.Background(), l.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.GRPC.GracefulStop()
	}()
	for _, s := range l.HTTP {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Shutdown(graceCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				l.Log.Warn("HTTP shutdown", "addr", s.Addr, "err", err)
			}
		}()
	}
	stopped := make(chan struct{})
	go func() {
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		l.Log.Info("stopped gracefully", "in_flight_finished", inFlight)
		return nil
	case <-graceCtx.Done():
	case <-l.aborted:
		l.stopNow()
		<-stopped
		return errSecondSignal
	}
	cancelled := l.inFlight.Load()
	l.Log.Error("shutdown grace ran out: cancelling in-flight calls", "cancelled", cancelled, "grace", l.ShutdownGrace)
	l.stopNow()
	<-stopped
	return &GraceError{Grace: l.ShutdownGrace, Cancelled: cancelled}
}

// ListenSignals starts taking SIGTERM, SIGINT and SIGHUP away from the Go
// runtime's default (which kills the process on each, SIGHUP included)
// before the models load, and returns them for Lifecycle.Signals. Until
// handOver is called, a SIGTERM or SIGINT exits at once with ExitFailure
// (nothing is served yet: there is nothing to drain), and a SIGHUP is kept
// for after the start: handOver returns the channel with it queued. Call
// stop instead when the start fails: the runtime's default comes back.
func ListenSignals(log *slog.Logger, exit func(int)) (handOver func() <-chan os.Signal, stop func()) {
	if log == nil {
		log = slog.Default()
	}
	if exit == nil {
		exit = os.Exit
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	stopWatch := make(chan struct{})
	hup := make(chan bool, 1)
	go func() {
		sawHUP := false
		defer func() { hup <- sawHUP }()
		for {
			select {
			case <-stopWatch:
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					log.Info("SIGHUP during start-up: reloading once started")
					sawHUP = true
					continue
				}
				log.Error("signal during start-up: exiting now", "signal", sig.String())
				exit(ExitFailure)
			}
		}
	}()
	var once sync.Once
	end := func() bool {
		sawHUP := false
		once.Do(func() {
			close(stopWatch)
			sawHUP = <-hup
		})
		return sawHUP
	}
	handOver = func() <-chan os.Signal {
		if end() {
			select {
			case sigs <- syscall.SIGHUP: // the start-up watcher no longer reads
			default: // full of signals Wait will read anyway
			}
		}
		return sigs
	}
	return handOver, func() {
		end()
		signal.Stop(sigs)
	}
}

// stopNow closes every server without waiting for calls.
func (l *Lifecycle) stopNow() {
	l.Health.Shutdown()
	select {
	case <-l.stopping:
	default:
		close(l.stopping)
	}
	l.GRPC.Stop()
	for _, s := range l.HTTP {
		s.Close()
	}
}
