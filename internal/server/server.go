// Package server assembles gcnserve: the model repository and the serving
// layer, the gRPC listener (the tutorial's GCNService, the Open Inference
// Protocol, health, reflection), the HTTP listener, the debug listener,
// metrics, authentication, admission control, and the lifecycle (warm-up
// before SERVING, drain on SIGTERM, reload on SIGHUP). Transports never
// import this package; it imports them.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/gcnserve/gcnserve/internal/bufpool"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/admission"
	"github.com/gcnserve/gcnserve/internal/auth"
	"github.com/gcnserve/gcnserve/internal/gcpace"
	"github.com/gcnserve/gcnserve/internal/graphs/store"
	"github.com/gcnserve/gcnserve/internal/memlimit"
	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/reqlog"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/transport/grpcapi"
	"github.com/gcnserve/gcnserve/internal/transport/httpjson"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
	"github.com/gcnserve/gcnserve/internal/transport/oip"
)

// Config is everything the server needs. ParseFlags fills it from flags and
// environment; tests build it directly from DefaultConfig. The comment on
// each field states the default that DefaultConfig sets.
type Config struct {
	// Addr is the gRPC listen address. Default ":9999", the tutorial's port.
	Addr string
	// HTTPAddr, when set, serves HTTP: the Open Inference Protocol's REST
	// API, POST /v1/process-graph, /healthz, /readyz and /metrics. Default
	// "" (off).
	HTTPAddr string
	// ModelPath is one ONNX model file, served as the only model. Default
	// "model/karate.onnx". Ignored when ModelRepository is set.
	ModelPath string
	// ModelRepository is a model repository directory
	// (<name>/<version>/model.onnx). Default "" (serve ModelPath).
	ModelRepository string
	// DefaultModel answers requests that name no model. Default "": the
	// only model when there is one.
	DefaultModel string
	// VersionPolicy is the server-wide version policy: "latest" (default),
	// "latest:N", "all" or "specific:1,3".
	VersionPolicy string
	// RepositoryPollInterval is how often the repository (or ModelPath) is
	// rescanned for new versions. Default 10s; 0 turns polling off (SIGHUP
	// still reloads).
	RepositoryPollInterval time.Duration
	// RepositoryMinFileAge is how long a model file must stay unchanged
	// before it is loaded, so a file still being copied is not. Default 1s;
	// raise it for slow network storage.
	RepositoryMinFileAge time.Duration
	// ORTLibrary is the ONNX Runtime shared library. Default "" (gcn's
	// default: $GCNSERVE_ORT_LIB, else the dynamic loader's search path).
	ORTLibrary string
	// IntraOpThreads is ORT's thread count inside one run. Default 1.
	IntraOpThreads int
	// MaxConcurrentRuns bounds model runs in flight per model version.
	// Default 0: the number of CPUs.
	MaxConcurrentRuns int
	// MaxNodes and MaxEdges bound one request (0: unlimited). Defaults
	// 1,000,000 nodes and 10,000,000 edges.
	MaxNodes, MaxEdges int
	// MaxRequestBytes bounds one request message. Default 64 MiB, which
	// admits a Cora-sized request with dense features (15.6 MB).
	MaxRequestBytes int
	// MaxInflightBytes is the memory budget of requests being processed at
	// once (admission control). Default: half the cgroup memory limit, else
	// half the machine's memory. 0 turns admission control off.
	MaxInflightBytes int64
	// GCPaceBytes is the smallest memory estimate of a request that makes
	// the garbage collector keep the heap within the estimates of the
	// requests in flight (package gcpace: a soft memory limit while they
	// run, memory returned to the OS after a burst), e.g.
	// gcpace.DefaultThreshold (32 MiB). Default 0: off. Measured: it cut the
	// large request's peak from 163 to 93 MiB over idle but cost 1.6x its
	// CPU, and 7x on Cora-shaped requests at c=4 (docs/BENCHMARKS.md,
	// "The pacer: off by default").
	GCPaceBytes int64
	// MaxQueue bounds the requests waiting for memory. Default 1024.
	MaxQueue int
	// QueueTimeout is the longest a request waits for memory. Default 5s.
	QueueTimeout time.Duration
	// Batch configures dynamic batching; see gcn.BatchOptions.
	Batch gcn.BatchOptions
	// BatchEnabled turns dynamic batching on (for models whose metadata
	// declares them batchable). Default false: with native execution a
	// karate-sized run costs microseconds, and at concurrency 64 batching
	// changed server CPU per request by 1.0x (0.131 -> 0.134 ms,
	// docs/BENCHMARKS.md); it pays only for models ONNX Runtime runs.
	BatchEnabled bool
	// RequestReadTimeout cuts off a gRPC call whose request message has
	// not arrived in full this long after its headers (DEADLINE_EXCEEDED),
	// releasing the memory it reserved: a client that stalls cannot hold
	// the budget. Default 30s; 0 turns it off.
	RequestReadTimeout time.Duration
	// MaxConcurrentStreams bounds the calls in flight on one client
	// connection; more wait in the client. Default 100 (HTTP/2's
	// recommended minimum).
	MaxConcurrentStreams int
	// MaxGRPCConns bounds the open connections of the gRPC listener; more
	// wait in the kernel's accept queue (0: unlimited). Default 4096. A
	// connection costs a file descriptor and about 17 KiB before any call
	// (and before any token is checked).
	MaxGRPCConns int
	// GRPCIdleTimeout closes (GOAWAY) a gRPC connection with no call in
	// flight for this long; clients reconnect on their next call. Default
	// 2m; 0 keeps idle connections.
	GRPCIdleTimeout time.Duration
	// MaxConnectionAge closes a client connection gracefully after this
	// long, so clients balancing over DNS find new replicas. Default 5m;
	// 0 keeps connections forever.
	MaxConnectionAge time.Duration
	// DrainDelay is how long, after SIGTERM, the server keeps accepting and
	// serving while health says NOT_SERVING, so that balancers stop sending
	// first. Default 5s.
	DrainDelay time.Duration
	// ShutdownGrace is how long shutdown then waits for in-flight requests
	// before cancelling them. Default 10s.
	ShutdownGrace time.Duration
	// AuthTokenFile, when set, requires "authorization: Bearer <token>" with
	// one of the file's tokens on every call but health and reflection.
	// Default "" (no authentication).
	AuthTokenFile string
	// TLSCertFile and TLSKeyFile, when both set, serve gRPC and HTTP over
	// TLS with that certificate. Default "" (plaintext). With
	// TLSClientCAFile also set, clients must present a certificate signed by
	// one of its CAs (mutual TLS).
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// DebugAddr, when set, serves /metrics and /debug/pprof/ over HTTP on
	// that address. Default "" (off): keep it off public interfaces.
	DebugAddr string
	// HTTP bounds what one HTTP client can hold on HTTPAddr and DebugAddr
	// (HTTPLimits' fields state the defaults).
	HTTP HTTPLimits
	// GraphStore, when set, is the directory of the stored graphs' durable
	// store (docs/STATEFUL.md). Default "": graphs live in memory only.
	GraphStore string
	// MaxGraphBytes bounds the memory of all stored graphs. Default: a
	// quarter of the cgroup memory limit, else of the RAM (requests get
	// half: the two never add up past the limit); 0: unlimited.
	MaxGraphBytes int64
	// GraphSnapshotBytes: a graph's delta log is folded into a new snapshot
	// once it is this big and bigger than the last snapshot. Default 4 MiB.
	GraphSnapshotBytes int64
	// GraphIncremental keeps per-layer state for stored graphs whose model
	// has a verified layer description (internal/incremental), so a score
	// reads it instead of recomputing the nodes' receptive field; other
	// models, and every model when false, recompute. Default true.
	GraphIncremental bool
	// GraphRevisionWait is the longest a score with a min_revision the
	// graph has not reached waits for it (then FAILED_PRECONDITION), unless
	// the call's deadline is sooner. Default 10s.
	GraphRevisionWait time.Duration
	// StreamSendTimeout cuts off a streaming response (ExportGraph over
	// gRPC, /v1/graphs/{id}/export over HTTP) whose client has not taken a
	// chunk for this long: a client that never reads holds a connection,
	// not the server. Default 30s; 0 turns it off.
	StreamSendTimeout time.Duration
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:                   ":9999",
		ModelPath:              "model/karate.onnx",
		VersionPolicy:          "latest",
		RepositoryPollInterval: 10 * time.Second,
		RepositoryMinFileAge:   modelrepo.DefaultMinFileAge,
		IntraOpThreads:         1,
		MaxNodes:               1_000_000,
		MaxEdges:               10_000_000,
		MaxRequestBytes:        httpx.DefaultMaxRequestBytes,
		MaxQueue:               1024,
		QueueTimeout:           5 * time.Second,
		Batch:                  gcn.DefaultBatchOptions(),
		BatchEnabled:           false,
		MaxConnectionAge:       5 * time.Minute,
		RequestReadTimeout:     30 * time.Second,
		MaxConcurrentStreams:   100,
		MaxGRPCConns:           4096,
		GRPCIdleTimeout:        2 * time.Minute,
		DrainDelay:             5 * time.Second,
		ShutdownGrace:          10 * time.Second,
		HTTP:                   DefaultHTTPLimits(),
		GraphSnapshotBytes:     serving.DefaultSnapshotBytes,
		GraphIncremental:       true,
		GraphRevisionWait:      serving.DefaultRevisionWait,
		StreamSendTimeout:      30 * time.Second,
	}
}

// Server is the assembled server. New builds it, Serve runs the gRPC
// listener, Run does everything.
type Server struct {
	cfg  Config
	log  *slog.Logger
	repo *modelrepo.Repository
	// published is repo once New has it: the repository's OnChange may run
	// (on its reload goroutine) before modelrepo.Open returns.
	published atomic.Pointer[modelrepo.Repository]
	svc       *serving.Service
	pacer     *gcpace.Pacer // nil when GCPaceBytes is 0
	// bufs keeps big request messages and their decoded tensors for reuse
	// outside the Go heap, within its bound (package bufpool).
	bufs    *bufpool.Pool
	graphs  *serving.Graphs
	store   *store.Store // nil without GraphStore
	metrics *metrics.Metrics
	grpc    *grpc.Server
	health  *health.Server
	// healthMu orders modelsChanged calls, so health reflects the newest
	// served set.
	healthMu sync.Mutex
	// http serves HTTPAddr's routes (nil when off).
	httpHandler http.Handler
	// oip serves the Open Inference Protocol on both listeners.
	oip       *oip.Server
	modelInfo modelInfoTracker
	// life drains on SIGTERM and reloads on SIGHUP (lifecycle.go).
	life *Lifecycle
}

// New loads the models (each warmed up before it serves) and prepares the
// listeners' handlers. A model that fails to load fails New when nothing
// else can be served.
func New(cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	s := &Server{cfg: cfg, log: log, health: health.NewServer()}
	// Failed requests get one warn line each, rate-limited.
	s.metrics = metrics.New(metrics.Options{Finished: reqlog.New(log, reqlog.Options{}).Finished})
	// Nothing is SERVING until the models are loaded.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(grpcapi.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)

	policy, err := modelrepo.ParsePolicy(cfg.VersionPolicy)
	if err != nil {
		return nil, fmt.Errorf("--version-policy: %w", err)
	}
	opts := []gcn.Option{
		gcn.WithLibraryPath(cfg.ORTLibrary),
		gcn.WithIntraOpThreads(cfg.IntraOpThreads),
		gcn.WithMaxConcurrentRuns(cfg.MaxConcurrentRuns),
	}
	if cfg.BatchEnabled {
		opts = append(opts, gcn.WithBatching(cfg.Batch))
	}
	rc := modelrepo.Config{
		DefaultModel: cfg.DefaultModel,
		Policy:       policy,
		PollInterval: cfg.RepositoryPollInterval,
		MinFileAge:   cfg.RepositoryMinFileAge,
		Options:      opts,
		Logger:       log,
		Events:       repoEvents{s.metrics},
		OnChange:     s.modelsChanged,
	}
	if cfg.ModelRepository != "" {
		rc.Repository = cfg.ModelRepository
	} else {
		rc.ModelFile = cfg.ModelPath
	}
	start := time.Now()
	s.repo, err = modelrepo.Open(rc)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.repo.Close())
		}
	}()

	var budget *admission.Budget
	if cfg.MaxInflightBytes > 0 {
		budget = admission.New(admission.Options{
			Bytes: cfg.MaxInflightBytes, MaxQueue: cfg.MaxQueue, QueueTimeout: cfg.QueueTimeout,
			Observer: admissionObserver{s.metrics, cfg.MaxInflightBytes},
		})
	}
	if cfg.GCPaceBytes > 0 {
		s.pacer = gcpace.New(gcpace.Config{Threshold: cfg.GCPaceBytes})
	}
	s.bufs = newRequestBuffers()
	s.svc = serving.New(serving.Config{
		Repository: s.repo, Budget: budget, Metrics: s.metrics,
		MaxNodes: cfg.MaxNodes, MaxEdges: cfg.MaxEdges, MaxRequestBytes: cfg.MaxRequestBytes,
		Logger: log, Pacer: s.pacer, TensorPool: s.bufs,
	})

	if err := s.openGraphs(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && s.store != nil {
			err = errors.Join(err, s.store.Close())
		}
	}()
	if s.pacer != nil {
		// The models are loaded and warmed up, the stored graphs
		// recovered: what the Go heap holds now is the idle server's.
		runtime.GC()
		s.pacer.Settle()
	}

	s.life = &Lifecycle{Log: log, DrainDelay: cfg.DrainDelay, ShutdownGrace: cfg.ShutdownGrace,
		Health: s.health, Reload: s.Reload}
	// Authentication runs first, in the tap handle (grpcguard.go): a
	// refused call is answered before its message is read, so it costs no
	// admission, no reading and no decoding.
	var tokens *auth.Tokens
	if cfg.AuthTokenFile != "" {
		if tokens, err = auth.Load(cfg.AuthTokenFile, log, authObserver{s.metrics}); err != nil {
			return nil, err
		}
	}
	guard, err := grpcGuard{tokens: tokens, readTimeout: cfg.RequestReadTimeout, sendTimeout: cfg.StreamSendTimeout, pool: s.bufs}.options(cfg)
	if err != nil {
		return nil, err
	}
	unary := []grpc.UnaryServerInterceptor{s.life.UnaryInterceptor(), recoverPanics(log)}
	stream := []grpc.StreamServerInterceptor{s.life.StreamInterceptor()}
	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		// A fixed 64 KiB stream window (which also turns off BDP window
		// growth, up to 16 MiB per stream) bounds what a request waiting
		// for admission buffers before its handler reads it: grpc-go
		// opens a stream's window to the whole message only once the
		// handler reads. The connection window paces the connection, not
		// memory (it is replenished on receipt), so it can be large.
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(16 << 20),
		// Clients keep idle connections alive with pings (the client
		// package every 30s); the server's default policy (5 minutes) would
		// answer them with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// An aged connection is closed gracefully (GOAWAY, calls in flight
		// finish), so round_robin clients re-resolve and reach new replicas
		// after a scale-up.
		// An idle connection is closed too (--grpc-idle-timeout): with
		// --max-grpc-conns, idle connections opened without a token
		// cannot keep the slots and file descriptors (issue 16's HTTP
		// idle timeout, for gRPC).
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: cfg.MaxConnectionAge, MaxConnectionAgeGrace: cfg.ShutdownGrace, MaxConnectionIdle: cfg.GRPCIdleTimeout}),
		// A connection that has not sent the HTTP/2 preface (and, with TLS,
		// finished its handshake) within grpcHandshakeTimeout is closed
		// (grpc-go's default: 120s).
		grpc.ConnectionTimeout(grpcHandshakeTimeout),
		grpc.StatsHandler(s.metrics.GRPCStatsHandler()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	gopts = append(gopts, guard...)
	if creds, err := transportCredentials(cfg); err != nil {
		return nil, err
	} else if creds != nil {
		gopts = append(gopts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(gopts...)
	s.life.GRPC = s.grpc
	grpcapi.Register(s.grpc, s.svc)
	grpcapi.RegisterGraphs(s.grpc, s.graphs, s.svc)
	s.oip = oip.New(oip.ServingBackend(s.svc, s.ready), oip.Options{
		MaxRequestBytes: int64(cfg.MaxRequestBytes), Logger: log})
	s.oip.Register(s.grpc)
	registerHealth(s.grpc, s.life.HealthService())
	reflection.Register(s.grpc)
	s.httpHandler = s.newHTTPHandler(tokens)
	s.published.Store(s.repo)
	s.modelsChanged()

	for _, m := range s.repo.Models() {
		for _, v := range m.Versions {
			log.Info("model version", "model", m.Name, "version", v.Version, "state", v.State.String(),
				"path", v.Path, "sha256", v.SHA256, "reason", v.Reason)
		}
	}
	log.Info("models loaded", "default", s.repo.Default(), "onnxruntime", gcn.RuntimeVersion(),
		"load_time", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// modelsChanged sets health from the served models: "" and GCNService are
// SERVING while the default model is served, gcnserve.model.<name> while
// any version of <name> is.
func (s *Server) modelsChanged() {
	repo := s.published.Load()
	if repo == nil {
		return // New calls it again once the repository is open
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	models := repo.Models()
	def := repo.Default()
	defReady := false
	for _, m := range models {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if m.Ready() {
			st = healthpb.HealthCheckResponse_SERVING
			defReady = defReady || m.Name == def
		}
		s.health.SetServingStatus(HealthServiceName(m.Name), st)
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if defReady {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(grpcapi.ServiceName, st)
	s.modelInfo.update(s.metrics, models)
}

// HealthServiceName is the grpc.health.v1 service name of one model.
func HealthServiceName(model string) string { return "gcnserve.model." + model }

// newHTTPHandler builds the HTTP listener's routes.
func (s *Server) newHTTPHandler(tokens *auth.Tokens) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	httpjson.Register(mux, s.svc)
	httpjson.RegisterGraphs(mux, s.graphs, s.svc)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.ready() {
			w.Write([]byte("ready\n"))
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	})
	s.oip.Routes(mux)
	var h http.Handler = httpx.WithReadTimeout(jsonRouteErrors(mux), s.cfg.HTTP.ReadTimeout)
	if tokens != nil {
		h = tokens.Middleware(h)
	}
	return s.metrics.HTTPMiddleware(mux, s.life.HTTPMiddleware(h))
}

// jsonRouteErrors answers requests no route matches (404) or whose method
// a route does not take (405, with its Allow header) with a JSON body
// {"error": "..."}, as every other HTTP error of the server has, instead of
// the mux's plain text.
func jsonRouteErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own answer says which (and sets Allow); keep its
		// status and headers, replace its body.
		rec := &routeStatus{header: http.Header{}, code: http.StatusOK}
		mux.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		httpx.WriteJSON(w, rec.code, httpx.ErrorBody{
			Error: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, strings.ToLower(http.StatusText(rec.code))),
		})
	})
}

// routeStatus keeps the status and headers a handler writes and drops its
// body.
type routeStatus struct {
	header http.Header
	code   int
}

func (w *routeStatus) Header() http.Header         { return w.header }
func (w *routeStatus) Write(p []byte) (int, error) { return len(p), nil }
func (w *routeStatus) WriteHeader(code int)        { w.code = code }

// ready reports whether the default model is served and the server is not
// draining.
func (s *Server) ready() bool {
	res, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: ""})
	return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// transportCredentials returns TLS credentials from cfg, or nil for
// plaintext.
func transportCredentials(cfg Config) (credentials.TransportCredentials, error) {
	conf, err := tlsConfig(cfg)
	if conf == nil || err != nil {
		return nil, err
	}
	return credentials.NewTLS(conf), nil
}

// tlsConfig returns the TLS configuration of cfg, or nil for plaintext.
func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		if cfg.TLSClientCAFile != "" {
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s: no PEM certificate in it", cfg.TLSClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// recoverPanics turns a panic in a handler into an Internal error for the
// client and a logged stack for the operator: a panic never reaches a client
// or takes the server down.
func recoverPanics(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error (details in the server log)")
			}
		}()
		return handler(ctx, req)
	}
}

// grpcHandshakeTimeout bounds a new gRPC connection's TLS handshake and
// HTTP/2 preface.
const grpcHandshakeTimeout = 10 * time.Second

// Serve answers gRPC requests on lis until Shutdown, at most
// --max-grpc-conns connections at once. It returns nil after a clean
// shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("serving gRPC", "addr", lis.Addr().String())
	if err := s.grpc.Serve(limitListener(lis, s.cfg.MaxGRPCConns)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Reload rescans the model repository (or the --model file) now.
func (s *Server) Reload(ctx context.Context) error {
	err := s.repo.Reload(ctx)
	s.metrics.RepositoryReloaded(err)
	return err
}

// Shutdown drains and stops the server exactly as SIGTERM does
// (Lifecycle: health NOT_SERVING, DrainDelay, stop accepting, ShutdownGrace
// for in-flight calls), without closing the models: call Close after it.
// It returns nil when every call finished, else a *GraceError.
func (s *Server) Shutdown() error {
	return s.life.Shutdown()
}

// Close closes the model repository (every model, after its last request).
// Call it after Shutdown.
func (s *Server) Close() error {
	defer s.pacer.Stop()
	err := s.repo.Close()
	if s.bufs != nil {
		err = errors.Join(err, s.bufs.Close())
	}
	if s.store != nil {
		s.graphs.Close() // snapshot writes in flight end first
		err = errors.Join(err, s.store.Close())
	}
	return err
}

// Run listens on cfg.Addr (and cfg.HTTPAddr, cfg.DebugAddr) and serves
// until SIGTERM, SIGINT or the end of ctx, then drains (Lifecycle) and
// closes; SIGHUP reloads the models. ready, if not nil, receives the bound
// gRPC address once serving. The error's ExitCode is the process's.
func Run(ctx context.Context, cfg Config, ready chan<- net.Addr) error {
	// In a container, tell the Go runtime about the cgroup's limit (unless
	// GOMEMLIMIT says otherwise), so it collects before the kernel kills.
	if l, err := memlimit.Detect(); err == nil {
		if n := memlimit.SetGoMemLimit(l, os.Getenv); n > 0 && cfg.Logger != nil {
			cfg.Logger.Info("GOMEMLIMIT set from the cgroup memory limit", "limit_bytes", l.Bytes, "gomemlimit_bytes", n, "source", string(l.Source))
		}
	}
	// SIGHUP and SIGTERM during start-up must not kill the process with
	// the Go runtime's default: ListenSignals holds them until Wait.
	handOver, stopSignals := ListenSignals(cfg.Logger, nil)
	defer stopSignals()
	s, err := New(cfg)
	if err != nil {
		return err
	}
	s.life.Signals = handOver()
	s.logMemory()
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen on %s: %w", cfg.Addr, err), s.Close())
	}
	served := make(chan error, 3)
	if cfg.HTTPAddr != "" {
		srv, err := s.serveHTTP(cfg.HTTPAddr, s.httpHandler, true, served)
		if err != nil {
			return errors.Join(fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err), lis.Close(), s.Close())
		}
		s.life.HTTP = append(s.life.HTTP, srv)
	}
	if cfg.DebugAddr != "" {
		srv, err := s.serveHTTP(cfg.DebugAddr, debugHandler(s.metrics), false, served)
		if err != nil {
			// The HTTP listener already serves: stop it before returning.
			for _, h := range s.life.HTTP {
				h.Close()
			}
			return errors.Join(fmt.Errorf("listen on --debug-addr %s: %w", cfg.DebugAddr, err), lis.Close(), s.Close())
		}
		s.life.HTTP = append(s.life.HTTP, srv)
	}
	go func() {
		if err := s.Serve(lis); err != nil {
			served <- err
		}
	}()
	if ready != nil {
		ready <- lis.Addr()
	}
	s.life.Close = s.Close // the drain closes the models last
	return s.life.Wait(ctx, served)
}

// logMemory sets the Go runtime's soft memory limit from a cgroup limit
// (unless GOMEMLIMIT is set) and logs the memory the server plans with.
func (s *Server) logMemory() {
	l, err := memlimit.Detect()
	if err != nil {
		s.log.Warn("cannot tell the memory limit", "err", err)
		return
	}
	goLimit := memlimit.SetGoMemLimit(l, os.Getenv)
	s.log.Info("memory", "limit", l.Bytes, "source", string(l.Source),
		"max_inflight_bytes", s.cfg.MaxInflightBytes, "gomemlimit_set", goLimit,
		"gomemlimit_env", os.Getenv("GOMEMLIMIT"))
}

// serveHTTP serves h on addr (with the server's TLS when useTLS); a
// failure of the listener goes to failed.
func (s *Server) serveHTTP(addr string, h http.Handler, useTLS bool, failed chan<- error) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l = limitListener(l, s.cfg.HTTP.MaxConns)
	srv := s.cfg.HTTP.server(addr, h, slog.NewLogLogger(s.log.Handler(), slog.LevelWarn))
	if useTLS {
		conf, err := tlsConfig(s.cfg)
		if err != nil {
			l.Close()
			return nil, err
		}
		if conf != nil {
			l = tls.NewListener(l, conf)
		}
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("HTTP %s: %w", addr, err)
		}
	}()
	s.log.Info("serving HTTP", "addr", l.Addr().String())
	return srv, nil
}

// debugHandler serves /metrics and the pprof endpoints.
func debugHandler(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
