package ortlib

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveExplicitWins(t *testing.T) {
	path, emb, cleanup, err := Resolve("/opt/ort/libonnxruntime.so")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if path != "/opt/ort/libonnxruntime.so" || emb {
		t.Errorf("Resolve(explicit) = %q, embedded %v; want the explicit path, not embedded", path, emb)
	}
}

func TestResolveFallsBackToCacheThenSystem(t *testing.T) {
	if Embedded() {
		// -tags ortembed: the embedded copy comes before any cache.
		path, emb, cleanup, err := Resolve("")
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		if st, err := os.Stat(path); !emb || err != nil || st.Size() != int64(EmbeddedSize()) {
			t.Fatalf("ortembed: Resolve(\"\") = %q, embedded %v (stat %v); want the embedded copy", path, emb, err)
		}
		return
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	path, emb, cleanup, err := Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	cleanup()
	if path != SystemName || emb {
		t.Errorf("empty cache: Resolve(\"\") = %q, %v; want %q, false", path, emb, SystemName)
	}

	lib := filepath.Join(cache, "gcnserve", "ort", Version, "libonnxruntime.so")
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	path, _, cleanup, err = Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	cleanup()
	if path != lib {
		t.Errorf("with a cached library: Resolve(\"\") = %q, want %q", path, lib)
	}
}

func TestMemfdIsSealedCopy(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	path, cleanup, err := memfd("test.bin", data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("memfd holds %d bytes, want the %d written", len(got), len(data))
	}
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		_, werr := f.Write([]byte("x"))
		f.Close()
		if werr == nil {
			t.Error("wrote to a sealed memfd; want EPERM")
		}
	}
	if err := cleanup(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := cleanup(); err != nil {
		t.Errorf("second cleanup: %v, want nil", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s still exists after cleanup", path)
	}
}

func TestTempFileRemovedByCleanup(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	path, cleanup, err := tempFile("lib.so", []byte("lib"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("temp dir %s: %v, mode %v; want private (0700)", filepath.Dir(path), err, st.Mode().Perm())
	}
	if err := cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("after cleanup %s: %v, want gone", filepath.Dir(path), err)
	}
}
