// Package store keeps stored graphs on disk in one bbolt file
// (go.etcd.io/bbolt): per graph, its metadata, a snapshot (the graph's
// binary form, in chunks) and the log of deltas applied since, keyed by
// revision.
//
// Crash semantics: every method that writes is one bbolt read-write
// transaction, committed with fsync before it returns (bbolt's default,
// never NoSync). A transaction is atomic: after a crash (kill -9, power
// loss) the file holds every committed transaction and nothing of an
// uncommitted one. The server acknowledges a delta only after Append
// returned, so an acknowledged delta survives and an unacknowledged one
// either is absent or (committed, then crashed before the reply) present,
// which a client retrying with its idempotency key sees as applied once.
//
// Why bbolt: one writer at a time (deltas of a graph are serialised anyway),
// copy-on-write B+tree pages and a meta-page switch as the commit point, so
// there is no write-ahead log to replay and no background compaction
// thread; the whole store is one file, pure Go, used by etcd for exactly
// this: small ordered writes that must be durable when acknowledged. Pebble
// and Badger are LSM trees built for write throughput across many keys;
// they bring background compactions, several files, and their sync
// guarantees depend on per-write options (pebble.Sync, badger SyncWrites),
// which buys nothing at one fsync per delta. The log-plus-snapshot layout
// here is what a graph needs: appends in revision order, a fold into a new
// snapshot now and then (WriteSnapshot), and a sequential read at start.
//
// Graph ids are bucket keys, never file names.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/gcnserve/gcnserve/internal/filekind"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside its directory.
const FileName = "graphs.db"

// chunkSize bounds one snapshot value: bbolt stores big values on overflow
// pages and copies them whole; 1 MiB chunks keep each write small.
const chunkSize = 1 << 20

var (
	bucketGraphs = []byte("graphs")
	keyMeta      = []byte("meta")
	keySnapRev   = []byte("snaprev")
	bucketSnap   = []byte("snap")
	bucketLog    = []byte("log")
)

// Store is the on-disk home of every stored graph. Its methods are safe for
// concurrent use; bbolt runs one write transaction at a time.
type Store struct {
	db   *bolt.DB
	path string
}

// LockTimeout is how long Open waits for the store file's lock (bbolt's
// flock) before it gives up: another process holding it is another
// gcnserve on the same directory, which would otherwise hang the start.
const LockTimeout = 2 * time.Second

// Open opens (or creates) the store in dir, creating dir if needed. It
// fails fast, with an error naming the path and what is wrong, on a dir
// that is not a directory, a store file that is not a regular file (a
// FIFO, a device, a symlink to one: bbolt would block or read forever), a
// file another process holds locked (after LockTimeout), a read-only file
// system, and a corrupted file (bbolt's panics on a damaged page are
// recovered into an error).
func Open(dir string) (s *Store, err error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("graph store %s is not a directory (%s)", dir, filekind.Of(fi.Mode()))
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("graph store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("graph store file %s is not a regular file (%s)", path, filekind.Of(fi.Mode()))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("graph store file: %w", err)
	}
	// bbolt rebuilds its freelist (below) on a goroutine of its own, where
	// a damaged page is a panic nothing can recover: the whole file is read
	// first, read-only, on this goroutine.
	if err := verify(path); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("graph store file %s is corrupted: %v", path, p)
		}
	}()
	// The freelist is not written at each commit (fewer pages per delta);
	// bbolt rebuilds it by scanning the file at open, as etcd configures it.
	// Durability is unchanged: every commit still fsyncs its pages, then its
	// meta page.
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        LockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err := openError(path, err); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketGraphs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("graph store %s: %w", dir, err)
	}
	return &Store{db: db, path: path}, nil
}

// openError names what bolt.Open's err means for the store file at path
// (nil for nil).
func openError(path string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("graph store file %s is locked by another process (another gcnserve on the same --graph-store?): gave up after %v", path, LockTimeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return fmt.Errorf("graph store file %s is corrupted or not a graph store: %w", path, err)
	}
	return fmt.Errorf("graph store file %s: %w", path, err)
}

// verify reads every page of an existing store file through a read-only
// bbolt handle, on the caller's goroutine: every bucket, every key, every
// value. bbolt panics on a damaged page; the panic is recovered here into
// an error naming the file.
func verify(path string) (err error) {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil // a new store
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: LockTimeout})
	if err := openError(path, err); err != nil {
		return err
	}
	defer db.Close()
	// bbolt follows page pointers as they are: a cycle is a walk without
	// end, a pointer past the mapping a fault. checkPages reads the page
	// tree first, with bounds and each page once; a fault is a panic here.
	if err := checkFile(path); err != nil {
		return fmt.Errorf("graph store file %s is corrupted: %w", path, err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("graph store file %s is corrupted: %v", path, p)
		}
	}()
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if sub := b.Bucket(k); sub != nil {
					return walk(sub)
				}
			}
			return nil
		})
	}
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
}

// checkFile runs checkPages on the file at path.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkPages(f, fi.Size())
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// ErrNotFound answers a write to a graph the store does not have.
var ErrNotFound = errors.New("graph store: no such graph")

func revKey(rev uint64) []byte { return binary.BigEndian.AppendUint64(nil, rev) }

func graphBucket(tx *bolt.Tx, id string) *bolt.Bucket {
	return tx.Bucket(bucketGraphs).Bucket([]byte(id))
}

// Create records a new graph with its metadata (opaque to the store) and
// an initial snapshot at revision snapRev (nil: none, the log starts at
// revision 1). An existing graph of that id is replaced.
func (s *Store) Create(id string, meta []byte, snapRev uint64, snap []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketGraphs)
		if root.Bucket([]byte(id)) != nil {
			if err := root.DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
		b, err := root.CreateBucket([]byte(id))
		if err != nil {
			return err
		}
		if err := b.Put(keyMeta, meta); err != nil {
			return err
		}
		if _, err := b.CreateBucket(bucketLog); err != nil {
			return err
		}
		if _, err := b.CreateBucket(bucketSnap); err != nil {
			return err
		}
		return putSnapshot(b, snapRev, snap)
	})
}

// putSnapshot replaces b's snapshot and drops the log up to snapRev.
func putSnapshot(b *bolt.Bucket, snapRev uint64, snap []byte) error {
	if err := b.DeleteBucket(bucketSnap); err != nil {
		return err
	}
	sb, err := b.CreateBucket(bucketSnap)
	if err != nil {
		return err
	}
	for i := 0; i*chunkSize < len(snap); i++ {
		chunk := snap[i*chunkSize : min((i+1)*chunkSize, len(snap))]
		if err := sb.Put(binary.BigEndian.AppendUint32(nil, uint32(i)), chunk); err != nil {
			return err
		}
	}
	if err := b.Put(keySnapRev, revKey(snapRev)); err != nil {
		return err
	}
	c := b.Bucket(bucketLog).Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= snapRev; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Append logs the delta that takes graph id to revision rev, durably.
func (s *Store) Append(id string, rev uint64, delta []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := graphBucket(tx, id)
		if b == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		return b.Bucket(bucketLog).Put(revKey(rev), delta)
	})
}

// WriteSnapshot replaces graph id's snapshot with snap, the graph at
// revision rev, and drops the deltas it folds in (revisions <= rev). Deltas
// logged after rev stay. The file does not shrink, but bbolt reuses the
// freed pages, so a graph's disk use stays about two snapshots plus the
// log between them.
func (s *Store) WriteSnapshot(id string, rev uint64, snap []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := graphBucket(tx, id)
		if b == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		return putSnapshot(b, rev, snap)
	})
}

// Delete removes graph id (no error if absent).
func (s *Store) Delete(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketGraphs).DeleteBucket([]byte(id))
		if errors.Is(err, bolterrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// Record is one stored graph as Load reads it.
type Record struct {
	ID   string
	Meta []byte
	// SnapRev is the revision of Snapshot (empty when none was written).
	SnapRev  uint64
	Snapshot []byte
	// Log is the deltas after SnapRev, in revision order.
	Log []LogEntry
}

// LogEntry is one logged delta.
type LogEntry struct {
	Rev   uint64
	Delta []byte
}

// Load calls f with every stored graph, in id order. The record's bytes
// are copies, f may keep them. A damaged page (bbolt panics on one) is an
// error naming the file, and so is f's error (a record f cannot decode).
func (s *Store) Load(f func(Record) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("graph store file %s is corrupted: %v", s.path, p)
		}
	}()
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGraphs).ForEachBucket(func(k []byte) error {
			b := tx.Bucket(bucketGraphs).Bucket(k)
			r := Record{ID: string(k), Meta: append([]byte(nil), b.Get(keyMeta)...)}
			if v := b.Get(keySnapRev); len(v) == 8 {
				r.SnapRev = binary.BigEndian.Uint64(v)
			}
			var size int
			b.Bucket(bucketSnap).ForEach(func(_, v []byte) error { size += len(v); return nil })
			r.Snapshot = make([]byte, 0, size)
			b.Bucket(bucketSnap).ForEach(func(_, v []byte) error {
				r.Snapshot = append(r.Snapshot, v...)
				return nil
			})
			err := b.Bucket(bucketLog).ForEach(func(k, v []byte) error {
				r.Log = append(r.Log, LogEntry{Rev: binary.BigEndian.Uint64(k), Delta: append([]byte(nil), v...)})
				return nil
			})
			if err != nil {
				return err
			}
			if err := f(r); err != nil {
				return fmt.Errorf("graph store file %s: %w", s.path, err)
			}
			return nil
		})
	})
}

// Size is the store file's size in bytes.
func (s *Store) Size() int64 {
	var n int64
	s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}
