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
	"os"
	"strings"

	"github.com/gcnserve/gcnserve/internal/server"
)

func main() {
	cfg, err := server.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcnserve:", err)
		os.Exit(server.ExitUsage)
	}
	// Run handles SIGTERM, SIGINT (drain) and SIGHUP (reload) itself.
	if err := server.Run(context.Background(), cfg, nil); err != nil {
		// One line: the operator reads it in a crash-looping pod's log.
		fmt.Fprintln(os.Stderr, "gcnserve:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(server.ExitCode(err))
	}
}
