package gcn

import (
	"sync"
	"time"
	"unsafe"

	"github.com/gcnserve/gcnserve/internal/graphcheck"
)

// scratch is the working memory of one native forward pass: the adjacency,
// the per-node scales and the transformed rows of two layers. Nothing in it
// outlives the pass (the probabilities and kept layer outputs are
// allocated apart, since the caller keeps them), so a Model hands scratch
// from one request to the next instead of allocating about 15 MB per large
// request. Every buffer is fully written before it is read, so reused
// contents never matter.
type scratch struct {
	offsets, sources []int32
	// counters are the adjacency build's per-part row cursors.
	counters                     [][]int32
	dinv, invDeg, rowNorm, scale []float32
	// h and spare are the transformed rows of the current and next layer.
	h, spare []float32
	// graph holds PredictGraph's tensors and id index.
	graph graphcheck.Buffers
}

// grow returns (*buf)[:n], reallocating *buf when its capacity is short.
func grow[T int32 | float32](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
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
		out[k] = grow(&out[k], n)
	}
	return out
}

// bytes is the memory s holds (capacities).
func (s *scratch) bytes() int64 {
	n := cap(s.offsets) + cap(s.sources) + cap(s.dinv) + cap(s.invDeg) + cap(s.rowNorm) + cap(s.scale) + cap(s.h) + cap(s.spare)
	for _, c := range s.counters {
		n += cap(c)
	}
	return int64(n)*int64(unsafe.Sizeof(float32(0))) + s.graph.Bytes()
}

// DefaultScratchBytes is WithScratchBytes' default: the scratch of about
// four 100k-node, 500k-edge, 16-wide requests (about 15 MB each).
const DefaultScratchBytes = 64 << 20

// scratchIdle is how long a scratchPool keeps its scratch without a
// request: after that it lets every buffer go, so a burst of large
// requests does not hold memory for good (the garbage collector returns it
// at its next cycle).
const scratchIdle = 5 * time.Second

// scratchPool keeps the scratch of finished forward passes for the next
// ones. It is bounded two ways: it retains at most maxBytes in all (a
// scratch that would take it over is dropped, so one huge request never
// pins its memory), and it drops everything after scratchIdle without a
// request. A nil *scratchPool pools nothing.
type scratchPool struct {
	maxBytes  int64
	idleAfter time.Duration // scratchIdle; shorter in tests

	// mu guards the fields below.
	mu    sync.Mutex
	free  []*scratch
	bytes int64 // the sum of free's bytes()
	idle  *time.Timer
	// closed: put drops, the timer is stopped.
	closed bool
}

// newScratchPool returns a pool of at most maxBytes, or nil when maxBytes
// is not positive (no pooling).
func newScratchPool(maxBytes int64) *scratchPool {
	if maxBytes <= 0 {
		return nil
	}
	return &scratchPool{maxBytes: maxBytes, idleAfter: scratchIdle}
}

// get returns the largest scratch kept (the likeliest to fit the request
// without growing), or a new empty one.
func (p *scratchPool) get() *scratch {
	if p == nil {
		return new(scratch)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	var bestBytes int64
	for i, s := range p.free {
		if b := s.bytes(); best < 0 || b > bestBytes {
			best, bestBytes = i, b
		}
	}
	if best < 0 {
		return new(scratch)
	}
	s := p.free[best]
	p.free[best] = p.free[len(p.free)-1]
	p.free[len(p.free)-1] = nil
	p.free = p.free[:len(p.free)-1]
	p.bytes -= bestBytes
	return s
}

// put gives s back for later passes, or drops it when keeping it would
// take the pool over its bound. s must not be used after.
func (p *scratchPool) put(s *scratch) {
	s.graph.Release() // the caller's id strings must not stay reachable
	if p == nil {
		return
	}
	b := s.bytes()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.bytes+b > p.maxBytes {
		return
	}
	p.free = append(p.free, s)
	p.bytes += b
	if p.idle == nil {
		p.idle = time.AfterFunc(p.idleAfter, p.drop)
	} else {
		p.idle.Reset(p.idleAfter)
	}
}

// drop lets every kept scratch go.
func (p *scratchPool) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.free)
	p.free = p.free[:0]
	p.bytes = 0
}

// retained is the memory the pool keeps now.
func (p *scratchPool) retained() int64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// close drops everything and stops the idle timer; later puts drop.
func (p *scratchPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	if p.idle != nil {
		p.idle.Stop()
	}
	p.mu.Unlock()
	p.drop()
}

// parallelParts runs fn(0), ..., fn(parts-1) at once, fn(0) on the
// calling goroutine.
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
