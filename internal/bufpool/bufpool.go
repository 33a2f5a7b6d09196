// Package bufpool keeps a big request's buffers for the next request, outside
// the Go heap, within a bound.
//
// A large request (100k nodes, 500k edges) arrives as 16.5 MB of wire bytes,
// which the gRPC codec copies into one contiguous buffer so that graphwire can
// decode it with node ids aliasing it. Allocated on the Go heap per request,
// that buffer is live at every collection during the request, and with
// GOGC=100 the collector lets the heap grow to twice what it found live: the
// buffer costs twice its size in peak RSS, and its allocation turns the heap
// over. Pool hands out such buffers from memory mapped outside the Go heap
// (mmap), so the collector neither scans nor counts them, and keeps them for
// reuse by size class (powers of two; the pages of a class that a request
// does not touch cost no RSS).
//
// The bound: a Pool keeps at most MaxIdleBytes of idle buffers (a buffer put
// back over it is unmapped at once), and unmaps every buffer idle longer than
// IdleTimeout, so one huge request does not leave its memory behind for good.
// Buffers smaller than MinBytes come from, and go back to, the Fallback pool
// (on the heap): small requests gain nothing from a mapping.
//
// The package imports nothing but the standard library, so that the public
// gcn package can use it too. Pool's methods are those of gRPC's
// mem.BufferPool; the server hands it to gRPC as one, with gRPC's default
// pool as its Fallback (internal/server, grpcbuffers.go).
//
// The server puts three kinds of buffer in its Pool: the HTTP/2 frames gRPC
// reads a message into (grpc experimental.BufferPool), the codec's
// contiguous copy of a request message, and the decoded feature matrix and
// edge index (Make and Free, through graphwire.DecodePooled). Each gcn.Model
// running natively has a Pool of its own for the forward pass's scratch
// (gcn.WithScratchBytes): the adjacency, per-node scales and transformed
// rows.
//
// The rule that makes this safe: memory that is unmapped faults when read.
// A buffer may be put back only once nothing can read it any more, and every
// string or slice aliasing it must be dead by then (the codec's rawMessage
// and serving.Request.Recycle document who owns what). A buffer its holder
// drops without putting it back is unmapped once its handle is unreachable
// (Stats.Dropped), so a dropped buffer is not a leak.
package bufpool

import (
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Defaults of Options.
const (
	// FrameBytes is the payload of a full HTTP/2 data frame as gRPC reads
	// it (16 KiB): the MinBytes of a pool that also holds the frames of
	// big messages (grpc experimental.BufferPool).
	FrameBytes = 16 << 10
	// DefaultMinBytes: a buffer smaller than 1 MiB comes from the fallback
	// pool. A karate or medium request (6 KB, 0.5 MB) stays on the heap.
	DefaultMinBytes = 1 << 20
	// DefaultMaxIdleBytes: at most 256 MiB of idle buffers are kept. One
	// large request (100k nodes, 500k edges, 16 features) leaves 65 MB:
	// its 16.5 MB of HTTP/2 frames, its wire bytes (32 MiB class), features
	// and edge index (8 MiB classes); four Cora-shaped ones at once, 190
	// MB. Measured: a 96 MiB bound made four concurrent Cora-shaped
	// requests map and unmap memory per request, 1.7x the CPU of a pool
	// that keeps it.
	DefaultMaxIdleBytes = 256 << 20
	// DefaultIdleTimeout: a buffer unused for 10 s is returned to the OS.
	DefaultIdleTimeout = 10 * time.Second
)

// Options configure a Pool. Zero values take the defaults above.
type Options struct {
	// MinBytes is the smallest buffer the Pool maps itself (default
	// DefaultMinBytes); smaller ones go to Fallback.
	MinBytes int
	// MaxIdleBytes bounds the bytes (whole size classes) kept idle (default
	// DefaultMaxIdleBytes); negative keeps none.
	MaxIdleBytes int64
	// IdleTimeout is how long an idle buffer is kept (default
	// DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Fallback serves buffers under MinBytes, and any buffer when a
	// mapping fails (default: plain heap slices, never reused). The server
	// passes gRPC's mem.DefaultBufferPool().
	Fallback Fallback
}

// Fallback is the pool a Pool leaves small buffers to: the methods of
// gRPC's mem.BufferPool, so that one serves without this package importing
// gRPC.
type Fallback interface {
	// Get returns a buffer of length n.
	Get(n int) *[]byte
	// Put returns a buffer Get handed out.
	Put(b *[]byte)
}

// heapFallback is the default Fallback: a new slice per Get, left to the
// collector on Put.
type heapFallback struct{}

func (heapFallback) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (heapFallback) Put(*[]byte) {}

// Stats describes a Pool's memory.
type Stats struct {
	// InUse is the bytes (whole size classes) handed out and not yet put
	// back; Idle the bytes kept for reuse.
	InUse, Idle int64
	// Maps and Unmaps count the mappings made and released; Dropped counts
	// those released because their holder dropped them while in use.
	Maps, Unmaps, Dropped int64
}

// Pool is a bounded pool of off-heap buffers. It has gRPC's mem.BufferPool
// methods and is safe for concurrent use.
type Pool struct {
	opts Options
	idle *idleSet[*[]byte]

	mu sync.Mutex
	// owned maps the first byte of every mapping the Pool made and has not
	// released to what it knows of it. Guarded by mu, as are the counts.
	owned              map[*byte]mapping
	gen                uint64 // numbers mappings, for reclaim
	inUse, maps, unmap int64
	dropped            int64
}

// mapping is one mapping the Pool made.
type mapping struct {
	class int
	// gen tells this mapping from a later one at the same address.
	gen uint64
	// pin holds the handle of a mapping Make handed out as a typed slice
	// (which does not keep the handle reachable), until Free.
	pin *[]byte
}

// New returns a Pool with opts.
func New(opts Options) *Pool {
	if opts.MinBytes <= 0 {
		opts.MinBytes = DefaultMinBytes
	}
	if opts.MaxIdleBytes == 0 {
		opts.MaxIdleBytes = DefaultMaxIdleBytes
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Fallback == nil {
		opts.Fallback = heapFallback{}
	}
	p := &Pool{opts: opts, owned: map[*byte]mapping{}}
	p.idle = newIdleSet(opts.MaxIdleBytes, opts.IdleTimeout, func(b *[]byte, class int) {
		p.release(unsafe.SliceData((*b)[:cap(*b)]), class)
	})
	return p
}

// classOf is the size class of a buffer of n bytes (or elements): the
// next power of two.
func classOf(n int) int {
	c := 1
	for c < n {
		c <<= 1
	}
	return c
}

// Get returns a buffer of length n. Its bytes are not zeroed: a reused
// buffer holds an earlier request's bytes.
func (p *Pool) Get(n int) *[]byte {
	if n < p.opts.MinBytes {
		return p.opts.Fallback.Get(n)
	}
	class := classOf(n)
	if b, ok := p.idle.take(class); ok {
		p.count(&p.inUse, int64(class))
		*b = (*b)[:n]
		return b
	}
	m, err := mapBytes(class)
	if err != nil {
		// Out of address space or mappings: the heap may still serve.
		return p.opts.Fallback.Get(n)
	}
	base := unsafe.SliceData(m)
	p.mu.Lock()
	p.gen++
	gen := p.gen
	p.owned[base] = mapping{class: class, gen: gen}
	p.inUse += int64(class)
	p.maps++
	p.mu.Unlock()
	b := m[:n]
	h := &b
	// A holder that drops a buffer instead of putting it back (gRPC drops
	// the unread frames of a call that ends before its handler reads
	// them) would leak the mapping: when the handle becomes unreachable
	// while in use, reclaim unmaps it. The handle stays reachable while it
	// is idle here, and every slice of the memory in use is held together
	// with it (a mem.Buffer, a Make pin).
	runtime.AddCleanup(h, p.reclaim, reclaimArg{base: base, gen: gen})
	return h
}

// reclaimArg names the mapping whose handle became unreachable.
type reclaimArg struct {
	base *byte // outside the Go heap: does not keep anything alive
	gen  uint64
}

// reclaim unmaps a mapping whose handle was dropped while in use; it does
// nothing if the mapping was already released (its address may since have
// been mapped again, under another gen).
func (p *Pool) reclaim(a reclaimArg) {
	p.mu.Lock()
	m, ok := p.owned[a.base]
	if !ok || m.gen != a.gen {
		p.mu.Unlock()
		return
	}
	p.inUse -= int64(m.class)
	p.dropped++
	p.mu.Unlock()
	p.release(a.base, m.class)
}

// Put returns a buffer Get handed out. Nothing may read or write it, or
// anything aliasing it, afterwards.
func (p *Pool) Put(b *[]byte) {
	base := unsafe.SliceData((*b)[:cap(*b)])
	p.mu.Lock()
	m, ok := p.owned[base]
	if ok {
		p.inUse -= int64(m.class)
	}
	p.mu.Unlock()
	if !ok {
		p.opts.Fallback.Put(b)
		return
	}
	*b = (*b)[:cap(*b)]
	p.idle.keep(b, m.class)
}

// release unmaps the mapping at base, of class bytes.
func (p *Pool) release(base *byte, class int) {
	p.mu.Lock()
	delete(p.owned, base)
	p.unmap++
	p.mu.Unlock()
	unmapBytes(unsafe.Slice(base, class))
}

func (p *Pool) count(n *int64, d int64) {
	p.mu.Lock()
	*n += d
	p.mu.Unlock()
}

// Stats returns the Pool's memory figures.
func (p *Pool) Stats() Stats {
	idle := p.idle.idleBytes()
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{InUse: p.inUse, Idle: idle, Maps: p.maps, Unmaps: p.unmap, Dropped: p.dropped}
}

// Close releases every idle buffer and stops keeping buffers: those still
// in use are released when put back. It returns nil.
func (p *Pool) Close() error {
	p.idle.close()
	return nil
}
