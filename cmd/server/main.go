// Command gcnserve serves a GCN exported to ONNX over gRPC
// (GCNService.ProcessGraph), running the model in-process with ONNX Runtime.
//
// Every flag has an environment twin (GCNSERVE_ + the flag name in upper
// case, dashes as underscores); a flag given on the command line wins.
// Run gcnserve --help for the list and the defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gcnserve/gcnserve/internal/server"
)

// ortVersion is the ONNX Runtime release scripts/fetch_ort.sh installs and
// onnxruntime_go in go.mod is built for.
const ortVersion = "1.29.0"

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcnserve:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg, nil); err != nil {
		// One line: the operator reads it in a crash-looping pod's log.
		fmt.Fprintln(os.Stderr, "gcnserve:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

// parseConfig reads flags, falling back to their environment twins.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (server.Config, error) {
	cfg := server.DefaultConfig()
	var logLevel, logFormat string
	fs := flag.NewFlagSet("gcnserve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (the tutorial's port is 9999)")
	fs.StringVar(&cfg.ModelPath, "model", defaultModel(), "ONNX model file")
	fs.StringVar(&cfg.ORTLibrary, "ort-lib", defaultORTLibrary(),
		"ONNX Runtime shared library (default: .ort/"+ortVersion+"/libonnxruntime.so fetched by 'make build', else the system's)")
	fs.IntVar(&cfg.IntraOpThreads, "intra-op-threads", 1, "ONNX Runtime threads inside one model run")
	fs.IntVar(&cfg.MaxConcurrentRuns, "max-concurrent-runs", 0, "model runs in flight at once; more requests wait (0: number of CPUs)")
	fs.IntVar(&cfg.MaxNodes, "max-nodes", cfg.MaxNodes, "most nodes in one request (0: unlimited)")
	fs.IntVar(&cfg.MaxEdges, "max-edges", cfg.MaxEdges, "most edges in one request (0: unlimited)")
	fs.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", cfg.MaxRequestBytes, "largest request message in bytes")
	fs.BoolVar(&cfg.BatchEnabled, "batch", cfg.BatchEnabled, "merge concurrent small requests into one model run (batchable models only)")
	fs.IntVar(&cfg.Batch.MaxNodes, "batch-max-nodes", cfg.Batch.MaxNodes, "most nodes in one merged batch; bigger graphs run alone")
	fs.IntVar(&cfg.Batch.MaxEdges, "batch-max-edges", cfg.Batch.MaxEdges, "most edges in one merged batch; bigger graphs run alone")
	fs.DurationVar(&cfg.Batch.MaxDelay, "batch-max-delay", cfg.Batch.MaxDelay, "longest a request waits for others to join its batch")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "on SIGTERM, how long in-flight requests may finish before they are cancelled")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate: serve gRPC over TLS (with --tls-key; empty: plaintext)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.TLSClientCAFile, "tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mutual TLS)")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve /metrics and /debug/pprof/ over HTTP here, e.g. 127.0.0.1:9100 (empty: off)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug logs each request's timing)")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gcnserve [flags]\n\nServes GCNService.ProcessGraph from an ONNX model.\nEach flag can also be set by its environment variable; the flag wins.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s (env %s, default %q)\n    \t%s\n", f.Name, envName(f.Name), f.DefValue, f.Usage)
		})
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && !set[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	default:
		return cfg, fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	if _, err := os.Stat(cfg.ModelPath); err != nil {
		return cfg, fmt.Errorf("model file: %w", err)
	}
	return cfg, nil
}

// envName is a flag's environment twin: --max-nodes is GCNSERVE_MAX_NODES.
func envName(flagName string) string {
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

func defaultORTLibrary() string {
	if p, ok := repoFile(filepath.Join(".ort", ortVersion, "libonnxruntime.so")); ok {
		return p
	}
	return "libonnxruntime.so"
}
