package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk layout, as far as checkPages reads it (go.etcd.io/bbolt
// internal/common: page.go, meta.go, bucket.go).
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	elementSize     = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	bucketLeafFlag  = 0x01
	bucketValueSize = 16 // root pgid u64, sequence u64; an inline page follows when root is 0
	metaMagic       = 0xED0CDAED
	metaVersion     = 2
	metaTxidAt      = pageHeaderSize + 48
	metaChecksumAt  = pageHeaderSize + 56
)

// checkPages walks the page tree of the bbolt file f (size bytes) from its
// newest valid meta page, every bucket and sub-bucket, reading each page
// once, and fails on a pointer outside the file, a page reached twice (a
// cycle, which bbolt itself would follow without end: a flipped pointer
// made it recurse until the stack passed 1 GB), an element outside its
// page or a page that is neither branch nor leaf. bbolt checks none of
// these when it reads a page. It holds one bit per page.
func checkPages(f io.ReaderAt, size int64) error {
	pageSize, root, hwm, err := checkMeta(f, size)
	if err != nil {
		return err
	}
	w := pageWalker{f: f, pageSize: int64(pageSize), hwm: hwm, seen: make([]byte, hwm/8+1)}
	_, err = w.page(root, "root bucket", 0, nil, nil)
	return err
}

// checkMeta returns the page size, the root bucket's page and the high
// water mark of the newest valid meta page (bbolt's choice: meta 0 gives
// the page size, else the OS's; the higher transaction id wins).
func checkMeta(f io.ReaderAt, size int64) (pageSize uint32, root, hwm uint64, err error) {
	le := binary.LittleEndian
	read := func(at int64) []byte {
		m := make([]byte, metaChecksumAt+8)
		if _, err := f.ReadAt(m, at); err != nil {
			return nil
		}
		h := fnv.New64a()
		h.Write(m[pageHeaderSize:metaChecksumAt])
		if le.Uint32(m[pageHeaderSize:]) != metaMagic || le.Uint32(m[pageHeaderSize+4:]) != metaVersion || h.Sum64() != le.Uint64(m[metaChecksumAt:]) {
			return nil
		}
		return m
	}
	best := read(0)
	at := int64(os.Getpagesize())
	if best != nil {
		at = int64(le.Uint32(best[pageHeaderSize+8:]))
	}
	if m := read(at); m != nil && (best == nil || le.Uint64(m[metaTxidAt:]) > le.Uint64(best[metaTxidAt:])) {
		best = m
	}
	if best == nil {
		return 0, 0, 0, fmt.Errorf("no valid meta page")
	}
	pageSize = le.Uint32(best[pageHeaderSize+8:])
	root = le.Uint64(best[pageHeaderSize+16:])
	hwm = le.Uint64(best[pageHeaderSize+40:])
	if pageSize < 1024 || pageSize > 1<<20 || hwm > uint64(size)/uint64(pageSize) {
		return 0, 0, 0, fmt.Errorf("meta page: page size %d and %d pages do not fit the file's %d bytes", pageSize, hwm, size)
	}
	return pageSize, root, hwm, nil
}

// maxDepth bounds how deep checkPages follows pointers: a bbolt tree of
// any real size is a few levels deep, and the store nests three buckets.
const maxDepth = 64

type pageWalker struct {
	f        io.ReaderAt
	pageSize int64
	hwm      uint64
	seen     []byte // one bit per page id below hwm
}

// page checks page id, reached from what, and everything below it: its
// keys must lie in [lo, hi) (nil: unbounded), as bbolt's own check (which
// it runs when it rebuilds the freelist at open, on a goroutine where an
// error is a crash) wants. It returns the page's largest key.
func (w *pageWalker) page(id uint64, what string, depth int, lo, hi []byte) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("page %d (from %s) is more than %d levels deep", id, what, maxDepth)
	}
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d (from %s) is outside the file's pages 2 to %d", id, what, w.hwm-1)
	}
	head := make([]byte, pageHeaderSize)
	if _, err := w.f.ReadAt(head, int64(id)*w.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	overflow := uint64(binary.LittleEndian.Uint32(head[12:]))
	if binary.LittleEndian.Uint64(head) != id || id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d (from %s): header says page %d with %d overflow pages", id, what, binary.LittleEndian.Uint64(head), overflow)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p/8]&(1<<(p%8)) != 0 {
			return nil, fmt.Errorf("page %d (from %s) is reached twice: the page tree has a cycle or shared pages", p, what)
		}
		w.seen[p/8] |= 1 << (p % 8)
	}
	buf := make([]byte, int64(overflow+1)*w.pageSize)
	if _, err := w.f.ReadAt(buf, int64(id)*w.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return w.elements(buf, fmt.Sprintf("page %d", id), depth, lo, hi, true)
}

// elements checks the elements of page p (a page or an inline bucket's
// page), named where, their keys' order when ordered (bbolt does not check
// inline buckets), and follows their pointers. It returns the largest key.
func (w *pageWalker) elements(p []byte, where string, depth int, lo, hi []byte, ordered bool) ([]byte, error) {
	le := binary.LittleEndian
	if len(p) < pageHeaderSize {
		return nil, fmt.Errorf("%s: %d bytes, shorter than a page header", where, len(p))
	}
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return nil, fmt.Errorf("%s: flags %#x, not a branch or leaf page", where, flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return nil, fmt.Errorf("%s: %d elements do not fit its %d bytes", where, count, len(p))
	}
	keys := make([][]byte, count)
	for i := range count {
		at := uint64(pageHeaderSize + i*elementSize)
		e := p[at:]
		pos, ksize, vsize := uint64(le.Uint32(e)), uint64(le.Uint32(e[4:])), uint64(0)
		if flags == leafPageFlag {
			pos, ksize, vsize = uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		}
		if at+pos+ksize+vsize > uint64(len(p)) {
			return nil, fmt.Errorf("%s: element %d's key or value lies outside the page", where, i)
		}
		keys[i] = p[at+pos : at+pos+ksize]
	}
	prev := lo
	for i, key := range keys {
		if ordered && (i == 0 && prev != nil && bytes.Compare(prev, key) > 0 || i > 0 && bytes.Compare(prev, key) >= 0 || hi != nil && bytes.Compare(key, hi) >= 0) {
			return nil, fmt.Errorf("%s: key %d (%x) is out of order", where, i, key)
		}
		at := uint64(pageHeaderSize + i*elementSize)
		e := p[at:]
		if flags == branchPageFlag {
			next := hi
			if i+1 < count {
				next = keys[i+1]
			}
			max, err := w.page(le.Uint64(e[8:]), fmt.Sprintf("%s branch element %d", where, i), depth+1, key, next)
			if err != nil {
				return nil, err
			}
			prev = max
			continue
		}
		prev = key
		if le.Uint32(e)&bucketLeafFlag == 0 {
			continue
		}
		pos, ksize, vsize := uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		v := p[at+pos+ksize : at+pos+ksize+vsize]
		if len(v) < bucketValueSize {
			return nil, fmt.Errorf("%s: bucket %q's value is %d bytes", where, key, len(v))
		}
		what := fmt.Sprintf("%s bucket %q", where, key)
		var err error
		if root := le.Uint64(v); root != 0 {
			_, err = w.page(root, what, depth+1, nil, nil)
		} else {
			_, err = w.elements(v[bucketValueSize:], what+" (inline)", depth+1, nil, nil, false)
		}
		if err != nil {
			return nil, err
		}
	}
	if count == 0 {
		return nil, nil
	}
	return prev, nil
}
