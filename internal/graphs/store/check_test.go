package store_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/gcnserve/gcnserve/internal/graphs/store"
)

// bigStore writes a store with enough graphs, log entries and big
// snapshots for branch pages, overflow pages and freed pages, and returns
// its file's bytes.
func bigStore(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for g := range 20 {
		id := fmt.Sprintf("graph-%02d", g)
		if err := s.Create(id, []byte("{}"), 1, bytes.Repeat([]byte{byte(g)}, 10_000*(g%5+1))); err != nil {
			t.Fatal(err)
		}
		for rev := uint64(2); rev < 40; rev++ {
			if err := s.Append(id, rev, bytes.Repeat([]byte{byte(rev)}, 200)); err != nil {
				t.Fatal(err)
			}
		}
		if g%3 == 0 {
			if err := s.WriteSnapshot(id, 40, make([]byte, 300_000)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for g := 0; g < 20; g += 7 {
		if err := s.Delete(fmt.Sprintf("graph-%02d", g)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// usedPages lists the pages in use (not free) of the bbolt file data, by
// type ("branch", "leaf", ...), each with its overflow pages.
func usedPages(t *testing.T, data []byte) map[string][][2]int {
	t.Helper()
	path := filepath.Join(t.TempDir(), store.FileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	used := map[string][][2]int{}
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; {
			p, err := tx.Page(id)
			if p == nil || err != nil {
				return err
			}
			if p.Type != "free" {
				used[p.Type] = append(used[p.Type], [2]int{id, p.OverflowCount})
			}
			id += p.OverflowCount + 1
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// TestOpenChecksPageTree: a good store with branch, overflow and freed
// pages opens and loads every graph; the same store with a page pointer
// turned into a cycle, or pointing past the file, is refused naming the
// file and the page, instead of bbolt walking it without end.
func TestOpenChecksPageTree(t *testing.T) {
	data := bigStore(t)
	open := func(t *testing.T, b []byte) (int, error) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, store.FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := store.Open(dir)
		if err != nil {
			return 0, err
		}
		defer s.Close()
		n := 0
		err = s.Load(func(store.Record) error { n++; return nil })
		return n, err
	}
	if n, err := open(t, data); err != nil || n != 17 {
		t.Fatalf("good store: %d graphs, %v; want 17, no error", n, err)
	}

	// The first element of every branch page pointed at its own page, and
	// past the file.
	le := binary.LittleEndian
	pageSize := int(le.Uint32(data[24:]))
	branches := usedPages(t, data)["branch"]
	for _, p := range branches {
		at := p[0] * pageSize
		for _, target := range []uint64{uint64(p[0]), 1 << 40} {
			b := bytes.Clone(data)
			le.PutUint64(b[at+16+8:], target)
			_, err := open(t, b)
			if err == nil || !strings.Contains(err.Error(), "corrupted") || !strings.Contains(err.Error(), fmt.Sprintf("page %d", target)) {
				t.Errorf("branch page %d pointing at page %d: %v, want 'corrupted' naming the page", p[0], target, err)
			}
		}
	}
	if len(branches) == 0 {
		t.Fatal("the store has no branch page: the test checks nothing")
	}
}

// TestOpenFlippedBytes: a store with one byte flipped in the header or
// first elements of a branch or leaf page opens
// or is refused with an error naming the file, and never hangs, panics or
// crashes (100 flips, fixed seed). Each try is a new file: a store that
// bbolt's Open panics on keeps its file lock until the collector closes
// the file (the server exits; nothing else opens it again).
func TestOpenFlippedBytes(t *testing.T) {
	data := bigStore(t)
	pageSize := int(binary.LittleEndian.Uint32(data[24:]))
	var pages []int // byte offsets of every branch and leaf page
	used := usedPages(t, data)
	for _, p := range append(used["branch"], used["leaf"]...) {
		pages = append(pages, p[0]*pageSize)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	refused := 0
	for range 100 {
		dir := t.TempDir()
		path := filepath.Join(dir, store.FileName)
		b := bytes.Clone(data)
		i := pages[rng.IntN(len(pages))] + rng.IntN(64) // header and first elements
		b[i] ^= byte(1 + rng.IntN(255))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := store.Open(dir)
		if err == nil {
			err = s.Load(func(store.Record) error { return nil })
			s.Close()
		}
		if err != nil {
			refused++
			if !strings.Contains(err.Error(), path) {
				t.Errorf("byte %d flipped: %v, want an error naming %s", i, err, path)
			}
		}
	}
	t.Logf("100 flipped bytes: %d refused, %d opened", refused, 100-refused)
}

// TestLoadErrorNamesFile: a record Load's caller cannot decode fails the
// load with an error naming the store file (the start-up error an operator
// sees), wrapping the caller's.
func TestLoadErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Create("g1", []byte("{}"), 1, []byte("snapshot")); err != nil {
		t.Fatal(err)
	}
	bad := errors.New(`graph "g1": corrupt record`)
	err = s.Load(func(store.Record) error { return bad })
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), filepath.Join(dir, store.FileName)) {
		t.Errorf("Load: %v, want %q naming %s", err, bad, filepath.Join(dir, store.FileName))
	}
}
