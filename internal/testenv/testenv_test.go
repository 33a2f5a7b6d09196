package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCoraInRepository: the Cora data set ships with the repository, so a
// clean clone finds it without any environment.
func TestCoraInRepository(t *testing.T) {
	t.Setenv("GCNSERVE_CORA_DIR", "")
	dir := CoraDir(t)
	if want := filepath.Join(RepoRoot(t), "testdata", "cora"); dir != want {
		t.Errorf("CoraDir = %q, want %q", dir, want)
	}
	for _, name := range []string{"nodes.csv.gz", "edges.csv.gz", "README.md"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}

func TestORTLibraryOverride(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GCNSERVE_ORT_LIB", lib)
	if got := ORTLibrary(t); got != lib {
		t.Errorf("ORTLibrary = %q, want $GCNSERVE_ORT_LIB %q", got, lib)
	}
}
