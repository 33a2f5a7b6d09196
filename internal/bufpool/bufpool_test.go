package bufpool

import (
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// countingPool is a fallback that counts what it serves.
type countingPool struct {
	mu       sync.Mutex
	gets     int
	puts     int
	lastSize int
}

func (c *countingPool) Get(n int) *[]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	c.lastSize = n
	b := make([]byte, n)
	return &b
}

func (c *countingPool) Put(*[]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
}

func newTestPool(t *testing.T, opts Options) (*Pool, *countingPool) {
	t.Helper()
	fb := &countingPool{}
	if opts.Fallback == nil {
		opts.Fallback = fb
	}
	p := New(opts)
	t.Cleanup(func() { p.Close() })
	return p, fb
}

// TestReuseByClass: a buffer put back serves the next Get of its size
// class (same memory, length as asked), and the pool maps nothing more.
func TestReuseByClass(t *testing.T) {
	p, fb := newTestPool(t, Options{MinBytes: 1 << 16})
	b := p.Get(100_000) // class 128 KiB
	if len(*b) != 100_000 || cap(*b) != 1<<17 {
		t.Fatalf("Get(100000): len %d cap %d, want 100000 and 131072", len(*b), cap(*b))
	}
	(*b)[99_999] = 7
	first := unsafe.SliceData(*b)
	p.Put(b)
	if s := p.Stats(); s.InUse != 0 || s.Idle != 1<<17 || s.Maps != 1 {
		t.Fatalf("after Put: %+v, want 128 KiB idle, none in use, one mapping", s)
	}
	c := p.Get(70_000) // same class
	if unsafe.SliceData(*c) != first || len(*c) != 70_000 {
		t.Errorf("Get(70000) after Put: a new buffer or len %d, want the same memory, len 70000", len(*c))
	}
	if s := p.Stats(); s.Maps != 1 || s.InUse != 1<<17 || s.Idle != 0 {
		t.Errorf("after reuse: %+v, want one mapping, 128 KiB in use", s)
	}
	d := p.Get(1 << 18) // another class: a new mapping
	if s := p.Stats(); s.Maps != 2 {
		t.Errorf("Get of a bigger class: %d mappings, want 2", s.Maps)
	}
	p.Put(c)
	p.Put(d)
	if fb.gets != 0 || fb.puts != 0 {
		t.Errorf("fallback used %d/%d times for buffers over MinBytes, want 0", fb.gets, fb.puts)
	}
}

// TestSmallGoesToFallback: buffers under MinBytes come from, and go back
// to, the fallback pool.
func TestSmallGoesToFallback(t *testing.T) {
	p, fb := newTestPool(t, Options{MinBytes: 1 << 16})
	b := p.Get(1000)
	p.Put(b)
	if fb.gets != 1 || fb.puts != 1 || fb.lastSize != 1000 {
		t.Errorf("fallback: %d gets %d puts (last size %d), want 1, 1, 1000", fb.gets, fb.puts, fb.lastSize)
	}
	if s := p.Stats(); s != (Stats{}) {
		t.Errorf("stats after a small buffer: %+v, want zero", s)
	}
}

// TestMaxIdleBytes: buffers put back past MaxIdleBytes are unmapped at
// once; the idle bytes never exceed the bound.
func TestMaxIdleBytes(t *testing.T) {
	p, _ := newTestPool(t, Options{MinBytes: 1 << 16, MaxIdleBytes: 3 << 16})
	var bufs []*[]byte
	for range 5 {
		bufs = append(bufs, p.Get(1<<16))
	}
	for _, b := range bufs {
		p.Put(b)
	}
	s := p.Stats()
	if s.Idle != 3<<16 || s.Unmaps != 2 || s.InUse != 0 {
		t.Errorf("5 buffers of 64 KiB put back under a 192 KiB bound: %+v, want 192 KiB idle, 2 unmapped", s)
	}
	// A buffer bigger than the bound is never kept.
	big := p.Get(1 << 20)
	p.Put(big)
	if s := p.Stats(); s.Idle != 3<<16 || s.Unmaps != 3 {
		t.Errorf("1 MiB buffer over the bound: %+v, want it unmapped", s)
	}
}

// TestIdleTimeout: idle buffers are released after IdleTimeout, so one
// huge request does not keep its memory; a pool with nothing idle has no
// timer.
func TestIdleTimeout(t *testing.T) {
	p, _ := newTestPool(t, Options{MinBytes: 1 << 16, IdleTimeout: 20 * time.Millisecond})
	a, b := p.Get(1<<16), p.Get(1<<20)
	p.Put(a)
	p.Put(b)
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Idle != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle buffers not released after 30 s: %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := p.Stats(); s.Unmaps != 2 || s.InUse != 0 {
		t.Errorf("after expiry: %+v, want both unmapped", s)
	}
	// Released memory is not handed out again: the next Get maps anew.
	c := p.Get(1 << 16)
	if s := p.Stats(); s.Maps != 3 {
		t.Errorf("Get after expiry: %d mappings, want 3", s.Maps)
	}
	p.Put(c)
}

// TestClose: Close releases the idle buffers, and buffers in use are
// released when put back.
func TestClose(t *testing.T) {
	p, _ := newTestPool(t, Options{MinBytes: 1 << 16})
	a, b := p.Get(1<<16), p.Get(1<<16)
	p.Put(a)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p.Put(b)
	if s := p.Stats(); s.Idle != 0 || s.InUse != 0 || s.Unmaps != 2 {
		t.Errorf("after Close and Put: %+v, want nothing kept, both unmapped", s)
	}
}

// TestConcurrent: many goroutines getting, writing and putting back
// buffers never share one (each writes its own mark and reads it back);
// run with -race.
func TestConcurrent(t *testing.T) {
	p, _ := newTestPool(t, Options{MinBytes: 1 << 16, MaxIdleBytes: 4 << 17})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				b := p.Get(1<<16 + i%2*(1<<16))
				mark := byte(g*31 + i)
				for j := 0; j < len(*b); j += 4096 {
					(*b)[j] = mark
				}
				for j := 0; j < len(*b); j += 4096 {
					if (*b)[j] != mark {
						errs <- "a buffer was handed to two goroutines at once"
						p.Put(b)
						return
					}
				}
				p.Put(b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if s := p.Stats(); s.InUse != 0 || s.Idle > 4<<17 {
		t.Errorf("after the load: %+v, want nothing in use, at most 512 KiB idle", s)
	}
}

// TestDroppedBufferReclaimed: a buffer its holder drops instead of putting
// back (gRPC drops the unread frames of a call that ends early) is unmapped
// once unreachable; a slice from Make is pinned until Free, however the
// collector runs.
func TestDroppedBufferReclaimed(t *testing.T) {
	p, _ := newTestPool(t, Options{MinBytes: 1 << 16})
	func() {
		b := p.Get(1 << 16)
		(*b)[0] = 1
	}() // dropped
	f := Make[float32](p, 1<<15) // 128 KiB, pinned
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Dropped == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped buffer not reclaimed after 30 s: %+v", p.Stats())
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	s := p.Stats()
	if s.InUse != 1<<17 || s.Unmaps != 1 {
		t.Errorf("after reclaiming the dropped buffer: %+v, want only Make's 128 KiB in use, one unmap", s)
	}
	for i := range f {
		f[i] = float32(i) // still mapped
	}
	Free(p, f)
	if s := p.Stats(); s.InUse != 0 || s.Idle != 1<<17 {
		t.Errorf("after Free: %+v, want Make's buffer idle", s)
	}
	runtime.GC()
	runtime.GC()
	if s := p.Stats(); s.Dropped != 1 || s.Idle != 1<<17 {
		t.Errorf("idle buffer after GC: %+v, want it kept (idle handles are reachable)", s)
	}
}

// TestKept: Kept hands back the largest value kept, keeps no more than its
// bound (a value over it is dropped), nothing after Close, nothing when
// its bound is not positive, and drops what stays idle.
func TestKept(t *testing.T) {
	size := func(b *[]string) int64 { return int64(cap(*b)) }
	mk := func(n int) *[]string { b := make([]string, n); return &b }
	k := NewKept(100, time.Minute, size)
	small, large := mk(20), mk(60)
	k.Put(small)
	k.Put(large)
	if got := k.Bytes(); got != 80 {
		t.Fatalf("kept %d bytes, want 80", got)
	}
	k.Put(mk(30)) // 110: over the bound
	if got := k.Bytes(); got != 80 {
		t.Errorf("after a put over the bound: %d bytes kept, want 80", got)
	}
	if got := k.Get(); got != large {
		t.Errorf("Get returned %d elements, want the largest (60)", cap(*got))
	}
	if got := k.Get(); got != small {
		t.Errorf("second Get returned %d elements, want 20", cap(*got))
	}
	if got := k.Get(); got != nil {
		t.Errorf("Get on an empty Kept returned %d elements, want nil", cap(*got))
	}
	k.Put(small)
	k.Close()
	k.Put(large)
	if got := k.Bytes(); got != 0 {
		t.Errorf("after Close: %d bytes kept, want 0", got)
	}
	if none := NewKept(0, time.Minute, size); none != nil {
		t.Error("NewKept(0) != nil, want a Kept that keeps nothing")
	} else {
		none.Put(small)
		if none.Get() != nil || none.Bytes() != 0 {
			t.Error("a nil Kept kept a value")
		}
		none.Close()
	}

	idle := NewKept(100, time.Millisecond, size)
	defer idle.Close()
	idle.Put(mk(10))
	deadline := time.Now().Add(30 * time.Second)
	for idle.Bytes() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still %d bytes kept 30 s after the idle timeout", idle.Bytes())
		}
		time.Sleep(time.Millisecond)
	}
}
