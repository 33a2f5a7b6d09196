// Package testenv finds what tests need outside the Go toolchain: the repo
// root, the ONNX Runtime library and Debian's Python with torch.
//
// A test that needs one of them and cannot find it skips on a developer's
// machine, but fails under CI=true: CI never skips silently.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ORTVersion is the ONNX Runtime version scripts/fetch_ort.sh installs.
const ORTVersion = "1.29.0"

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
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing, and CI=true forbids skipping", what)
	}
	t.Skipf("%s is missing (run 'make test' to fetch it)", what)
}

// ORTLibrary returns the ONNX Runtime shared library: $GCNSERVE_ORT_LIB, else
// the copy scripts/fetch_ort.sh caches under .ort/.
func ORTLibrary(t testing.TB) string {
	t.Helper()
	path := os.Getenv("GCNSERVE_ORT_LIB")
	if path == "" {
		path = filepath.Join(RepoRoot(t), ".ort", ORTVersion, "libonnxruntime.so")
	}
	if _, err := os.Stat(path); err != nil {
		Missing(t, "the ONNX Runtime library ("+path+")")
	}
	return path
}

// Python returns Debian's python3 with torch and onnx importable.
func Python(t testing.TB) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch, onnx, networkx").Run(); err != nil {
		Missing(t, python+" with torch, onnx and networkx")
	}
	return python
}

// CoraDir returns the Cora dataset directory (../shared/datasets/cora from
// the repo root, or $GCNSERVE_CORA_DIR).
func CoraDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("GCNSERVE_CORA_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "..", "shared", "datasets", "cora")
	}
	if _, err := os.Stat(filepath.Join(dir, "nodes.csv")); err != nil {
		Missing(t, "the Cora dataset ("+dir+")")
	}
	return dir
}
