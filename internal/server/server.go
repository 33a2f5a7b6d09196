// Package server serves GCNService over gRPC: it loads the model, answers
// ProcessGraph and GetModelInfo, and runs grpc.health.v1 and reflection.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// Config is everything the server needs. cmd/server fills it from flags and
// environment; tests build it directly. The comment on each field states the
// default that DefaultConfig sets.
type Config struct {
	// Addr is the listen address. Default ":9999", the tutorial's port.
	Addr string
	// ModelPath is the ONNX model file. Default "model/karate.onnx".
	ModelPath string
	// ORTLibrary is the ONNX Runtime shared library. Default "" (gcn's
	// default: $GCNSERVE_ORT_LIB, else the dynamic loader's search path).
	ORTLibrary string
	// IntraOpThreads is ORT's thread count inside one run. Default 1.
	IntraOpThreads int
	// MaxConcurrentRuns bounds model runs in flight. Default 0: the number
	// of CPUs.
	MaxConcurrentRuns int
	// MaxNodes and MaxEdges bound one request (0: unlimited). Defaults
	// 1,000,000 nodes and 10,000,000 edges.
	MaxNodes, MaxEdges int
	// MaxRequestBytes bounds one request message. Default 64 MiB, which
	// admits a Cora-sized request with dense features (15.6 MB).
	MaxRequestBytes int
	// Batch configures dynamic batching; see gcn.BatchOptions.
	Batch gcn.BatchOptions
	// BatchEnabled turns dynamic batching on (only for models whose metadata
	// declares them batchable). Default true: on karate-sized graphs at
	// concurrency 64 it cut server CPU per request by 1.3-1.6x and raised
	// throughput by as much (docs/BENCHMARKS.md), and a request alone in the
	// server runs at once, so low load pays no delay.
	BatchEnabled bool
	// ShutdownGrace is how long shutdown waits for in-flight requests before
	// cancelling them. Default 10s.
	ShutdownGrace time.Duration
	// TLSCertFile and TLSKeyFile, when both set, serve gRPC over TLS with
	// that certificate. Default "" (plaintext, as the tutorial). With
	// TLSClientCAFile also set, clients must present a certificate signed by
	// one of its CAs (mutual TLS).
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// DebugAddr, when set, serves /metrics (Prometheus text format) and
	// /debug/pprof/ over HTTP on that address. Default "" (off): keep it off
	// public interfaces.
	DebugAddr string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:            ":9999",
		ModelPath:       "model/karate.onnx",
		MaxNodes:        1_000_000,
		MaxEdges:        10_000_000,
		MaxRequestBytes: 64 << 20,
		IntraOpThreads:  1,
		Batch:           gcn.DefaultBatchOptions(),
		BatchEnabled:    true,
		ShutdownGrace:   10 * time.Second,
	}
}

// Server is a loaded model behind a gRPC server.
type Server struct {
	cfg Config
	log *slog.Logger
	// closeModel releases the model; Close calls it last.
	closeModel func() error
	metrics    *metrics
	grpc       *grpc.Server
	health     *health.Server
}

// New loads the model, runs one warm-up inference and prepares the gRPC
// server. Health reports SERVING from the moment Serve starts; a model that
// fails to load or to run fails New.
func New(cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	start := time.Now()
	opts := []gcn.Option{
		gcn.WithLibraryPath(cfg.ORTLibrary),
		gcn.WithIntraOpThreads(cfg.IntraOpThreads),
		gcn.WithMaxConcurrentRuns(cfg.MaxConcurrentRuns),
	}
	if cfg.BatchEnabled {
		opts = append(opts, gcn.WithBatching(cfg.Batch))
	}
	model, err := gcn.Open(cfg.ModelPath, opts...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, model.Close())
		}
	}()
	if err := warmUp(model); err != nil {
		return nil, fmt.Errorf("model %s: warm-up inference failed: %w", cfg.ModelPath, err)
	}
	s, err := newServer(cfg, model, model.Close)
	if err != nil {
		return nil, err
	}
	info := model.Info()
	if want := max(cfg.IntraOpThreads, 1); info.IntraOpThreads < want {
		cfg.Logger.Warn("the model caps ONNX Runtime's intra-op threads", "requested", want,
			"using", info.IntraOpThreads, "max_intra_op_threads", info.Metadata["max_intra_op_threads"])
	}
	cfg.Logger.Info("model loaded",
		"model", cfg.ModelPath, "name", info.Name, "version", info.Version,
		"sha256", info.SHA256, "onnxruntime", info.ORTVersion,
		"feature_dim", info.FeatureDim, "classes", info.NumClasses,
		"score", info.ScoreMeaning, "batching", info.Batching,
		"load_time", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// newServer builds the gRPC server around a loaded model. closeModel runs
// in Close.
func newServer(cfg Config, model Predictor, closeModel func() error) (*Server, error) {
	log := cfg.Logger
	info := model.Info()
	s := &Server{cfg: cfg, log: log, closeModel: closeModel, health: health.NewServer(), metrics: newMetrics()}
	if cfg.BatchEnabled && !info.Batchable {
		log.Warn("batching requested but the model does not declare batchable=true in its metadata; serving unbatched")
	}
	predictor := model

	codec, err := newRawCodec()
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		grpc.ChainUnaryInterceptor(recoverPanics(log)),
	}
	if creds, err := transportCredentials(cfg); err != nil {
		return nil, err
	} else if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(opts...)
	svc := &gcnService{
		predictor: predictor,
		info:      info,
		limits:    graphwire.Limits{MaxNodes: cfg.MaxNodes, MaxEdges: cfg.MaxEdges},
		modelInfo: newModelInfo(info, &cfg, info.Batching),
		log:       log,
		metrics:   s.metrics,
	}
	s.grpc.RegisterService(&gcnServiceDesc, svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	// SERVING only once the model has loaded and run: a load balancer that
	// sees SERVING can send traffic. Serve does not change that.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(gcnServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// transportCredentials returns TLS credentials from cfg, or nil for
// plaintext.
func transportCredentials(cfg Config) (credentials.TransportCredentials, error) {
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
	return credentials.NewTLS(conf), nil
}

// warmUp runs the model once on a two-node graph, so the first request does
// not pay for ORT's lazy initialisation and a model that cannot run fails at
// start, not on a client's request.
func warmUp(m *gcn.Model) error {
	f := m.Info().FeatureDim
	_, err := m.Predict(context.Background(), gcn.Tensors{
		NumNodes:  2,
		Features:  make([]float32, 2*f),
		EdgeIndex: []int64{0, 1},
	})
	return err
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

// Serve answers requests on lis until Shutdown. It returns nil after a
// clean shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("serving", "addr", lis.Addr().String())
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Shutdown stops the server: health turns NOT_SERVING first (so balancers
// stop sending), then in-flight requests get up to cfg.ShutdownGrace to
// finish before the rest are cancelled.
func (s *Server) Shutdown() {
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.cfg.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-stopped:
		s.log.Info("stopped gracefully")
	case <-timer.C:
		s.log.Warn("grace period over, cancelling in-flight requests", "grace", s.cfg.ShutdownGrace)
		s.grpc.Stop()
		<-stopped
	}
}

// Close releases the batcher and the model. Call it after Shutdown.
func (s *Server) Close() error {
	return s.closeModel()
}

// Run listens on cfg.Addr and serves until ctx ends, then shuts down and
// closes. ready, if not nil, receives the bound address once serving.
func Run(ctx context.Context, cfg Config, ready chan<- net.Addr) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen on %s: %w", cfg.Addr, err), s.Close())
	}
	if cfg.DebugAddr != "" {
		debugLis, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			return errors.Join(fmt.Errorf("listen on --debug-addr %s: %w", cfg.DebugAddr, err), lis.Close(), s.Close())
		}
		debug := &http.Server{Handler: debugHandler(s.metrics), ReadHeaderTimeout: 10 * time.Second}
		go debug.Serve(debugLis)
		defer debug.Close()
		s.log.Info("debug endpoints", "addr", debugLis.Addr().String(), "paths", "/metrics /debug/pprof/")
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	if ready != nil {
		ready <- lis.Addr()
	}
	select {
	case err = <-served:
		// Serve failed on its own: nothing to drain.
	case <-ctx.Done():
		s.log.Info("shutting down", "cause", context.Cause(ctx))
		s.Shutdown()
		err = <-served
	}
	return errors.Join(err, s.Close())
}
