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
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gcnserve/gcnserve/internal/ortlib"
	"github.com/gcnserve/gcnserve/internal/server"
	"github.com/gcnserve/gcnserve/internal/version"
	"github.com/gcnserve/gcnserve/model"
)

func main() {
	if slices.Contains(os.Args[1:], "--version") || slices.Contains(os.Args[1:], "-version") {
		fmt.Println(version.Get())
		os.Exit(0)
	}
	getenv, release, err := embeddedFiles(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcnserve:", err)
		os.Exit(1)
	}
	cfg, err := server.ParseFlags(os.Args[1:], getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
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

// embeddedFiles lets a lone binary run: it returns a getenv that supplies
// GCNSERVE_ORT_LIB (the ONNX Runtime library embedded by 'make build', as a
// memfd path; ortlib.Resolve) and GCNSERVE_MODEL (the embedded karate model,
// when no model/karate.onnx is found beside the binary) unless the
// environment sets them. Flags on the command line still win over both.
// release frees the library's copy once it is loaded; the model's stays,
// as the server re-reads the model file on every repository poll.
//
// TODO(lead): fold into server.ParseFlags/New (and gcn.OpenBytes for the
// model) if you prefer; test/single checks the behaviour.
func embeddedFiles(getenv func(string) string) (func(string) string, func(), error) {
	env := map[string]string{}
	release := func() {}
	if getenv("GCNSERVE_ORT_LIB") == "" && ortlib.Embedded() {
		lib, _, done, err := ortlib.Resolve("")
		if err != nil {
			return nil, nil, err
		}
		env["GCNSERVE_ORT_LIB"], release = lib, func() { done() }
	}
	if getenv("GCNSERVE_MODEL") == "" && !bundledModelFound() {
		path, _, err := ortlib.MemFile("karate.onnx", model.Karate)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("embedded karate model: %w", err)
		}
		// As old as the binary, and at least a minute: the repository loads
		// a file only once it has stopped changing (modelrepo MinFileAge).
		mtime := time.Now().Add(-time.Minute)
		if exe, err := os.Executable(); err == nil {
			if st, err := os.Stat(exe); err == nil && st.ModTime().Before(mtime) {
				mtime = st.ModTime()
			}
		}
		os.Chtimes(path, mtime, mtime)
		env["GCNSERVE_MODEL"] = path
	}
	return func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return getenv(k)
	}, release, nil
}

// bundledModelFound reports whether server.ParseFlags' default model file,
// model/karate.onnx in the working directory or the binary's source tree,
// exists.
func bundledModelFound() bool {
	if _, err := os.Stat("model/karate.onnx"); err == nil {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(filepath.Dir(exe), "..", "model", "karate.onnx"))
	return err == nil
}
