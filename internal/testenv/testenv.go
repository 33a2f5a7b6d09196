// Package testenv finds what tests need outside the Go toolchain: the repo
// root, the ONNX Runtime library, Debian's Python with torch, and the Cora
// data set the repository carries as test data.
//
// A test that needs one of them and cannot find it skips on a developer's
// machine, but fails under CI=true: CI never skips silently.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/ortlib"
)

// ORTVersion is the ONNX Runtime version scripts/fetch_ort.sh installs.
const ORTVersion = ortlib.Version

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Missing skips the test, or fails it under CI=true, for want of what.
// remedy, when given, says how to get it ("run 'make ort'").
func Missing(t testing.TB, what string, remedy ...string) {
	t.Helper()
	msg := what + " is missing"
	if len(remedy) > 0 {
		msg += " (" + strings.Join(remedy, "; ") + ")"
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI=true forbids skipping", msg)
	}
	t.Skip(msg)
}

// ORTLibrary returns the ONNX Runtime shared library: $GCNSERVE_ORT_LIB, else
// the per-user copy scripts/fetch_ort.sh caches (ortlib.CachePath).
func ORTLibrary(t testing.TB) string {
	t.Helper()
	path := os.Getenv("GCNSERVE_ORT_LIB")
	if path == "" {
		if path = ortlib.CachePath(); path == "" {
			Missing(t, "the ONNX Runtime library (neither XDG_CACHE_HOME nor HOME is set)",
				"set GCNSERVE_ORT_LIB, or HOME and run 'make ort'")
		}
	}
	if _, err := os.Stat(path); err != nil {
		Missing(t, "the ONNX Runtime library ("+path+")", "run 'make ort', or set GCNSERVE_ORT_LIB")
	}
	return path
}

// Python returns Debian's python3 with torch and onnx importable.
func Python(t testing.TB) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch, onnx, networkx").Run(); err != nil {
		Missing(t, python+" with torch, onnx and networkx", "run 'make deps' (scripts/install_deps.sh)")
	}
	return python
}

// CoraDir returns the Cora data set directory: testdata/cora in the
// repository (nodes.csv.gz, edges.csv.gz), or $GCNSERVE_CORA_DIR.
func CoraDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("GCNSERVE_CORA_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "testdata", "cora")
	}
	for _, name := range []string{"nodes.csv", "nodes.csv.gz"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return dir
		}
	}
	Missing(t, "the Cora data set ("+dir+"/nodes.csv[.gz])", "it ships in testdata/cora; check GCNSERVE_CORA_DIR")
	return dir
}

// CPUTime is this process's user plus system CPU time so far, for
// benchmarks that report CPU per operation.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
