// Command gcnserve serves GCN models exported to ONNX over gRPC
// (GCNService.ProcessGraph, the Open Inference Protocol) and HTTP, running
// the models in-process with ONNX Runtime.
//
// Every flag has an environment twin (GCNSERVE_ + the flag name in upper
// case, dashes as underscores); a flag given on the command line wins.
// Run gcnserve --help for the list and the defaults. Exit codes: 0 after a
// clean shutdown, 1 when the models or the runtime fail to load (or
// shutdown had to cancel calls), 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/gcnserve/gcnserve/internal/server"
	"github.com/gcnserve/gcnserve/internal/version"
)

func main() {
	getenv, release, err := server.EmbeddedDefaults(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcnserve:", err)
		os.Exit(1)
	}
	cfg, err := server.ParseFlags(os.Args[1:], getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if errors.Is(err, server.ErrVersion) {
		fmt.Println(version.Get())
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcnserve:", err)
		os.Exit(server.ExitUsage)
	}
	if cfg.ModelRepository == "" && cfg.ModelPath == getenv("GCNSERVE_MODEL") && os.Getenv("GCNSERVE_MODEL") == "" {
		cfg.Logger.Info("no --model given or found: serving the karate model embedded in the binary")
	}
	ready := make(chan net.Addr, 1)
	go func() { <-ready; release() }() // ONNX Runtime is loaded: its in-memory copy can go
	// Run handles SIGTERM, SIGINT (drain) and SIGHUP (reload) itself.
	if err := server.Run(context.Background(), cfg, ready); err != nil {
		// One line: the operator reads it in a crash-looping pod's log.
		fmt.Fprintln(os.Stderr, "gcnserve:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(server.ExitCode(err))
	}
}
