package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/graphs/store"
)

// TestOpenHostile: Open refuses, fast and naming the path and the
// problem, a dir that is a file, a store file that is a FIFO or a symlink
// to a device, junk, a file with damaged pages (bbolt panics on them:
// recovered), and a file another open store holds locked.
func TestOpenHostile(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	dir := func(name string) string {
		d := filepath.Join(tmp, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	fifo := dir("fifo")
	if err := syscall.Mkfifo(filepath.Join(fifo, store.FileName), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := dir("dev")
	os.Symlink("/dev/zero", filepath.Join(dev, store.FileName))
	junk := dir("junk")
	os.WriteFile(filepath.Join(junk, store.FileName), []byte(strings.Repeat("junk", 16<<10)), 0o600)

	// A good store with a graph, then its data pages overwritten.
	good := dir("good")
	s, err := store.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create("g", []byte("{}"), 1, make([]byte, 3<<20)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, _ := os.ReadFile(filepath.Join(good, store.FileName))
	for i := 2 * 4096; i < len(data); i++ {
		data[i] = 0xA5
	}
	damaged := dir("damaged")
	os.WriteFile(filepath.Join(damaged, store.FileName), data, 0o600)

	for _, tc := range []struct {
		name, dir string
		want      []string
	}{
		{"a file", file, []string{file, "not a directory"}},
		{"a FIFO store file", fifo, []string{filepath.Join(fifo, store.FileName), "not a regular file", "FIFO"}},
		{"a symlink to /dev/zero", dev, []string{filepath.Join(dev, store.FileName), "not a regular file", "character device"}},
		{"junk", junk, []string{filepath.Join(junk, store.FileName), "corrupted"}},
	} {
		s, err := store.Open(tc.dir)
		if err == nil {
			s.Close()
			t.Errorf("Open of %s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open of %s: %v, want it to name %q", tc.name, err, w)
			}
		}
	}
	// Damaged pages: Open or Load fails naming the file; nothing panics.
	if s, err := store.Open(damaged); err == nil {
		err = s.Load(func(store.Record) error { return nil })
		s.Close()
		if err == nil || !strings.Contains(err.Error(), filepath.Join(damaged, store.FileName)) {
			t.Errorf("Load of a store with damaged pages: %v, want an error naming the file", err)
		}
	} else if !strings.Contains(err.Error(), filepath.Join(damaged, store.FileName)) {
		t.Errorf("Open of a store with damaged pages: %v, want an error naming the file", err)
	}

	// Locked by another open store.
	s, err = store.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	began := time.Now()
	if s2, err := store.Open(good); err == nil {
		s2.Close()
		t.Errorf("a second Open of a store in use: no error")
	} else if !strings.Contains(err.Error(), "locked by another process") || time.Since(began) > store.LockTimeout+2*time.Second {
		t.Errorf("a second Open of a store in use: %v after %v, want 'locked by another process' after %v", err, time.Since(began), store.LockTimeout)
	}
}
