package gcn

import (
	"sync"
	"time"
	"unsafe"

	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/graphcheck"
)

// scratch is the working memory of one native forward pass: the adjacency,
// the per-node scales and the transformed rows of two layers. Nothing in it
// outlives the pass (the probabilities and kept layer outputs are
// allocated apart, since the caller keeps them). The numeric buffers come
// from pool, memory mapped outside the Go heap and reused by size class
// from one request to the next (package bufpool): kept on the heap, about
// 15 MB of them per large request would count as live to the collector,
// which then lets the heap grow twice as far. Every buffer is fully
// written before it is read, so reused contents never matter.
//
// Lifetime: release gives the mapped buffers back, and the pool may unmap
// them, so release runs only once nothing reads them: after the pass has
// returned, and every pass waits for all its goroutines before it returns
// (parallel, parallelParts), on a cancelled context too.
type scratch struct {
	// pool serves the numeric buffers (nil: the heap).
	pool             *bufpool.Pool
	offsets, sources []int32
	// counters are the adjacency build's per-part row cursors.
	counters                     [][]int32
	dinv, invDeg, rowNorm, scale []float32
	// h and spare are the transformed rows of the current and next layer.
	h, spare []float32
	// graph holds PredictGraph's tensors and id index (on the heap: the
	// ids are strings; graphcheck owns their allocation).
	graph graphcheck.Buffers
}

// grow returns (*buf)[:n], replacing *buf by a buffer from sc's pool when
// its capacity is short (the old one goes back to the pool: it must not be
// in use).
func grow[T int32 | float32](sc *scratch, buf *[]T, n int) []T {
	if cap(*buf) < n {
		bufpool.Free(sc.pool, *buf)
		*buf = bufpool.Make[T](sc.pool, n)
	}
	return (*buf)[:n]
}

// cursors returns parts counters of n values each.
func (s *scratch) cursors(parts, n int) [][]int32 {
	for len(s.counters) < parts {
		s.counters = append(s.counters, nil)
	}
	out := s.counters[:parts]
	for k := range out {
		out[k] = grow(s, &out[k], n)
	}
	return out
}

// release gives every mapped buffer back to the pool; buffers on the heap
// (under scratchMinBytes) stay in s for its next pass. Nothing may read the
// mapped ones afterwards.
func (s *scratch) release() {
	for _, b := range [...]*[]int32{&s.offsets, &s.sources} {
		if bufpool.Free(s.pool, *b) {
			*b = nil
		}
	}
	for k := range s.counters {
		if bufpool.Free(s.pool, s.counters[k]) {
			s.counters[k] = nil
		}
	}
	for _, b := range [...]*[]float32{&s.dinv, &s.invDeg, &s.rowNorm, &s.scale, &s.h, &s.spare} {
		if bufpool.Free(s.pool, *b) {
			*b = nil
		}
	}
}

// bytes is the memory s holds (capacities): after release, its heap
// buffers and PredictGraph's.
func (s *scratch) bytes() int64 {
	n := cap(s.offsets) + cap(s.sources) + cap(s.dinv) + cap(s.invDeg) + cap(s.rowNorm) + cap(s.scale) + cap(s.h) + cap(s.spare)
	for _, c := range s.counters {
		n += cap(c)
	}
	return int64(n)*int64(unsafe.Sizeof(float32(0))) + s.graph.Bytes()
}

// DefaultScratchBytes is WithScratchBytes' default: the scratch of about
// four 100k-node, 500k-edge, 16-wide requests (about 18 MiB of size
// classes each).
const DefaultScratchBytes = 64 << 20

// scratchIdle is how long a scratchPool keeps a buffer without a request
// taking it: after that the buffer is unmapped (returned to the OS at
// once), so a burst of large requests does not hold memory for good.
const scratchIdle = 5 * time.Second

// scratchMinBytes is the smallest buffer the scratch maps: smaller ones
// (karate's, a medium graph's offsets) are heap slices, allocated per pass.
// One HTTP/2 frame's size, as the server's pool.
const scratchMinBytes = bufpool.FrameBytes

// scratchPool keeps the memory of finished forward passes for the next
// ones: their big numeric buffers in a bufpool.Pool (mapped, by size
// class), and the scratch itself with what stays on the heap (buffers
// under scratchMinBytes, and PredictGraph's, which hold id strings) in a
// bufpool.Kept. Both are bounded the same two ways: each keeps at most
// maxBytes idle (a buffer or scratch that would take it over is let go at
// once, so one huge request never pins its memory), and lets go what has
// been idle for scratchIdle. A nil *scratchPool pools nothing: every pass
// allocates on the heap.
type scratchPool struct {
	bufs *bufpool.Pool
	kept *bufpool.Kept[scratch]
}

// newScratchPool returns a pool of at most maxBytes idle, buffers released
// after idle unused, or nil when maxBytes is not positive (no pooling).
func newScratchPool(maxBytes int64, idle time.Duration) *scratchPool {
	if maxBytes <= 0 {
		return nil
	}
	return &scratchPool{
		bufs: bufpool.New(bufpool.Options{MinBytes: scratchMinBytes, MaxIdleBytes: maxBytes, IdleTimeout: idle}),
		kept: bufpool.NewKept(maxBytes, idle, (*scratch).bytes),
	}
}

// get returns the largest scratch kept, or a new one; its big buffers
// come from the pool.
func (p *scratchPool) get() *scratch {
	if p == nil {
		return new(scratch)
	}
	s := p.kept.Get()
	if s == nil {
		s = new(scratch)
	}
	s.pool = p.bufs
	return s
}

// put gives s's mapped buffers back, and keeps s with its heap buffers for
// later passes (or lets it go over the bound). Nothing may read s's
// buffers afterwards: s's pass must have returned.
func (p *scratchPool) put(s *scratch) {
	s.release()
	s.graph.Release() // the caller's id strings must not stay reachable
	if p != nil && s.bytes() > 0 {
		p.kept.Put(s)
	}
}

// retained is the memory the pool keeps idle now.
func (p *scratchPool) retained() int64 {
	if p == nil {
		return 0
	}
	return p.bufs.Stats().Idle + p.kept.Bytes()
}

// close releases everything kept; buffers in use are released when put
// back.
func (p *scratchPool) close() {
	if p == nil {
		return
	}
	p.bufs.Close()
	p.kept.Close()
}

// parallelParts runs fn(0), ..., fn(parts-1) at once, fn(0) on the
// calling goroutine, and returns once all have.
func parallelParts(parts int, fn func(k int)) {
	var wg sync.WaitGroup
	for k := 1; k < parts; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(k)
		}()
	}
	fn(0)
	wg.Wait()
}
