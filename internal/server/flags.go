package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gcnserve/gcnserve/internal/memlimit"
	"github.com/gcnserve/gcnserve/internal/ortlib"
	"github.com/gcnserve/gcnserve/internal/reqlog"
)

// ParseFlags builds a Config from command-line flags, each falling back to
// its environment twin (GCNSERVE_ + the flag name in upper case, dashes as
// underscores) read through getenv; a flag given on the command line wins.
// --help writes the flags, their twins and defaults to stderr and returns
// flag.ErrHelp. Every error is a usage error (exit code 2).
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	if l, err := memlimit.Detect(); err == nil {
		cfg.MaxInflightBytes = memlimit.DefaultInflightBytes(l)
		cfg.MaxGraphBytes = cfg.MaxInflightBytes / 2
	}
	var logLevel, logFormat string
	fs := flag.NewFlagSet("gcnserve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "gRPC listen address (the tutorial's port is 9999)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listen address for the Open Inference Protocol REST API, /v1/process-graph, /healthz, /readyz, /metrics, e.g. :8000 (empty: off)")
	fs.StringVar(&cfg.ModelPath, "model", defaultModel(), "ONNX model file, served as the only model (ignored with --model-repository)")
	fs.StringVar(&cfg.ModelRepository, "model-repository", cfg.ModelRepository, "model repository directory: <name>/<version>/model.onnx (empty: serve --model)")
	fs.StringVar(&cfg.DefaultModel, "default-model", cfg.DefaultModel, "model for requests that name none (empty: the only model)")
	fs.StringVar(&cfg.VersionPolicy, "version-policy", cfg.VersionPolicy, "versions served per model: latest, latest:N, all or specific:1,3 (a model's version_policy file overrides)")
	fs.DurationVar(&cfg.RepositoryPollInterval, "repository-poll-interval", cfg.RepositoryPollInterval, "how often the repository (or --model file) is rescanned for new versions (0: only on SIGHUP)")
	fs.DurationVar(&cfg.RepositoryMinFileAge, "repository-min-file-age", cfg.RepositoryMinFileAge, "how long a model file must stay unchanged before it is loaded (a file still being copied is not)")
	fs.StringVar(&cfg.ORTLibrary, "ort-lib", defaultORTLibrary(),
		"ONNX Runtime shared library (default: ${XDG_CACHE_HOME:-~/.cache}/gcnserve/ort/"+ortlib.Version+
			"/libonnxruntime.so, fetched by 'make ort', else the system's)")
	fs.IntVar(&cfg.IntraOpThreads, "intra-op-threads", cfg.IntraOpThreads, "ONNX Runtime threads inside one model run")
	fs.IntVar(&cfg.MaxConcurrentRuns, "max-concurrent-runs", cfg.MaxConcurrentRuns, "model runs in flight at once per model version; more requests wait (0: number of CPUs)")
	fs.IntVar(&cfg.MaxNodes, "max-nodes", cfg.MaxNodes, "most nodes in one request (0: unlimited)")
	fs.IntVar(&cfg.MaxEdges, "max-edges", cfg.MaxEdges, "most edges in one request (0: unlimited)")
	fs.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", cfg.MaxRequestBytes, "largest request message in bytes")
	fs.Int64Var(&cfg.MaxInflightBytes, "max-inflight-bytes", cfg.MaxInflightBytes, "memory budget for requests in progress, in bytes (default: half the cgroup memory limit, else half the RAM; 0: no admission control)")
	fs.Int64Var(&cfg.GCPaceBytes, "gc-pace-bytes", cfg.GCPaceBytes, "requests whose memory estimate is at least this many bytes make the garbage collector keep the heap within the estimates of the requests in flight (a soft memory limit while they run; memory returned to the OS 2s after the last); memory first at a CPU price: 33554432 (32 MiB) is the measured choice; 0: off, the default")
	fs.IntVar(&cfg.MaxQueue, "max-queue", cfg.MaxQueue, "most requests waiting for memory; more are refused with RESOURCE_EXHAUSTED")
	fs.DurationVar(&cfg.QueueTimeout, "queue-timeout", cfg.QueueTimeout, "longest a request waits for memory before RESOURCE_EXHAUSTED")
	fs.BoolVar(&cfg.BatchEnabled, "batch", cfg.BatchEnabled, "merge concurrent small requests into one model run (batchable models only)")
	fs.IntVar(&cfg.Batch.MaxNodes, "batch-max-nodes", cfg.Batch.MaxNodes, "most nodes in one merged batch; bigger graphs run alone")
	fs.IntVar(&cfg.Batch.MaxEdges, "batch-max-edges", cfg.Batch.MaxEdges, "most edges in one merged batch; bigger graphs run alone")
	fs.DurationVar(&cfg.Batch.MaxDelay, "batch-max-delay", cfg.Batch.MaxDelay, "longest a request waits for others to join its batch")
	fs.DurationVar(&cfg.RequestReadTimeout, "request-read-timeout", cfg.RequestReadTimeout, "cut off a gRPC call whose request message has not arrived in full this long after its headers, releasing the memory it reserved (0: never)")
	fs.IntVar(&cfg.MaxConcurrentStreams, "max-concurrent-streams", cfg.MaxConcurrentStreams, "most gRPC calls in flight on one client connection; more wait in the client")
	fs.IntVar(&cfg.MaxGRPCConns, "max-grpc-conns", cfg.MaxGRPCConns, "most open gRPC client connections; more wait to be accepted (0: unlimited; needs a file descriptor each)")
	fs.DurationVar(&cfg.GRPCIdleTimeout, "grpc-idle-timeout", cfg.GRPCIdleTimeout, "close a gRPC connection with no call in flight this long; clients reconnect on their next call (0: never)")
	fs.DurationVar(&cfg.MaxConnectionAge, "max-connection-age", cfg.MaxConnectionAge, "close client connections gracefully after this long, so clients balancing over DNS reach new replicas (0: never)")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "on SIGTERM, how long to keep serving with health NOT_SERVING before closing the listeners")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "after the drain delay, how long in-flight requests may finish before they are cancelled")
	fs.StringVar(&cfg.AuthTokenFile, "auth-token-file", cfg.AuthTokenFile, "file of bearer tokens, one per line: every call but health and reflection needs one (empty: no auth)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate: serve gRPC and HTTP over TLS (with --tls-key; empty: plaintext)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.TLSClientCAFile, "tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mutual TLS)")
	fs.DurationVar(&cfg.HTTP.ReadHeaderTimeout, "http-read-header-timeout", cfg.HTTP.ReadHeaderTimeout, "longest an HTTP client may take to send a request's headers")
	fs.DurationVar(&cfg.HTTP.ReadTimeout, "http-read-timeout", cfg.HTTP.ReadTimeout, "longest an HTTP client may take to send a request; a body gets it again once admitted, and one still arriving then is cut off (408) and its memory released")
	fs.DurationVar(&cfg.HTTP.IdleTimeout, "http-idle-timeout", cfg.HTTP.IdleTimeout, "close an HTTP keep-alive connection idle this long")
	fs.IntVar(&cfg.HTTP.MaxHeaderBytes, "http-max-header-bytes", cfg.HTTP.MaxHeaderBytes, "largest HTTP request header block in bytes (431 past it)")
	fs.IntVar(&cfg.HTTP.MaxConns, "max-http-conns", cfg.HTTP.MaxConns, "most open connections per HTTP listener; more wait to be accepted (0: unlimited; needs a file descriptor each)")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve /metrics and /debug/pprof/ over HTTP here, e.g. 127.0.0.1:9100 (empty: off)")
	fs.StringVar(&cfg.GraphStore, "graph-store", cfg.GraphStore, "directory of the stored graphs' durable store (bbolt; every acknowledged delta is fsynced first); empty: graphs live in memory only")
	fs.Int64Var(&cfg.MaxGraphBytes, "max-graph-bytes", cfg.MaxGraphBytes, "memory budget of all stored graphs, in bytes (default: a quarter of the cgroup memory limit, else of the RAM; 0: unlimited)")
	fs.Int64Var(&cfg.GraphSnapshotBytes, "graph-snapshot-bytes", cfg.GraphSnapshotBytes, "fold a stored graph's delta log into a new snapshot once the log is this big and bigger than the last snapshot (with --graph-store)")
	fs.BoolVar(&cfg.GraphIncremental, "graph-incremental", cfg.GraphIncremental, "keep stored graphs' per-layer state and update it with each delta (models with a verified 'layers' description; others recompute the asked nodes' receptive field at each score)")
	fs.DurationVar(&cfg.GraphRevisionWait, "graph-revision-wait", cfg.GraphRevisionWait, "longest a stored-graph score waits for its min_revision before FAILED_PRECONDITION (the call's deadline, when sooner, ends it first)")
	fs.DurationVar(&cfg.StreamSendTimeout, "stream-send-timeout", cfg.StreamSendTimeout, "cut off a graph export (gRPC stream or HTTP body) whose client has not taken a chunk this long (0: never)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug logs each request's timing)")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	showVersion := fs.Bool("version", false, "print gcnserve's, Go's and ONNX Runtime's versions (and whether ONNX Runtime is embedded) and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gcnserve [flags]\n\nServes GCNService.ProcessGraph (and the Open Inference Protocol) from ONNX models.\nEach flag can also be set by its environment variable; the flag wins.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s (env %s, default %q)\n    \t%s\n", f.Name, EnvName(f.Name), f.DefValue, f.Usage)
		})
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *showVersion {
		return cfg, ErrVersion
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fromEnv := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(EnvName(f.Name)); v != "" && !set[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err)
			}
			fromEnv[f.Name] = true
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	if err := cfg.Validate(); err != nil {
		var r *RangeError
		if errors.As(err, &r) && fromEnv[r.Flag] {
			r.Env = EnvName(r.Flag)
		}
		return cfg, err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	// Durations as Go duration strings ("1.5ms"), never raw nanoseconds.
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: reqlog.ReplaceAttr}
	switch logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	default:
		return cfg, fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	if cfg.ModelRepository == "" {
		if _, err := os.Stat(cfg.ModelPath); err != nil {
			return cfg, fmt.Errorf("model file: %w", err)
		}
	} else if st, err := os.Stat(cfg.ModelRepository); err != nil || !st.IsDir() {
		return cfg, fmt.Errorf("--model-repository %q: not a directory", cfg.ModelRepository)
	}
	return cfg, nil
}

// ErrVersion is ParseFlags' answer to --version: print version.Get and
// exit 0.
var ErrVersion = errors.New("version requested")

// EnvName is a flag's environment twin: --max-nodes is GCNSERVE_MAX_NODES.
func EnvName(flagName string) string {
	return "GCNSERVE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// repoFile finds a file of the source tree for a binary built by
// 'make build' (bin/gcnserve) and run from anywhere, or from the repo root.
func repoFile(rel string) (string, bool) {
	if _, err := os.Stat(rel); err == nil {
		return rel, true
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "..", rel)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return rel, false
}

func defaultModel() string {
	p, _ := repoFile("model/karate.onnx")
	return p
}

// defaultORTLibrary is the per-user copy scripts/fetch_ort.sh caches
// (ortlib.CachePath), else the system's library (the dynamic loader's
// search path). A binary with the library embedded supplies
// GCNSERVE_ORT_LIB instead (cmd/server).
func defaultORTLibrary() string {
	if p := ortlib.CachePath(); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ortlib.SystemName
}
