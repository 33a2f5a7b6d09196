// Package gcpace keeps the Go heap close to what admission reserved while
// large requests run, and gives the memory back once they are over.
//
// Left to GOGC=100, the garbage collector lets the heap grow to about twice
// what was live at its last cycle. For a large request (a 16.5 MB graph of
// 100k nodes holds about 65 MB live at its peak) that is 130-140 MB of peak
// RSS over idle, most of it the previous request's garbage. A lower GOGC
// for the whole process would tax every small request with more collections
// (its minimum heap of 4 MB shrinks too). Instead, while requests whose
// reservation is at least Threshold are in flight, a Pacer sets the
// runtime's soft memory limit (debug.SetMemoryLimit) to the Go memory of
// the idle server plus the sum of their reservations: the collector then
// works harder only when the heap nears what admission counted, and peak
// RSS over idle stays within the reservations (docs/BENCHMARKS.md, "Memory
// per request"). Small requests never engage it.
//
// Between large requests the limit stays at the base plus the most they
// held. When no large request has been in flight for Linger, the Pacer
// restores the limit it found and returns freed memory to the OS
// (debug.FreeOSMemory, and glibc's malloc_trim for ONNX Runtime's): one
// collection and a scavenge, paid once per burst, not per request.
//
// The limit is soft: if the reservations underestimate what is live, the
// runtime's collector CPU cap (about half of GOMAXPROCS) bounds the cost,
// and the heap grows past the limit rather than failing.
package gcpace

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/internal/memtrim"
)

// Defaults of Config.
const (
	// DefaultThreshold is the smallest reservation that engages the Pacer:
	// karate and medium-sized graphs (under a megabyte on the wire) stay
	// below it, a 10 MB request is above.
	DefaultThreshold = 32 << 20
	// DefaultLinger is how long the Pacer stays engaged after the last large
	// request: back-to-back large requests keep one idle baseline, and the
	// memory goes back to the OS once a burst is over.
	DefaultLinger = 2 * time.Second
	// DefaultSlack is the room over the reservations. Measured on the large
	// request (one at a time, loaded 2-core machine): with no slack, 66-83
	// MB over idle; with 16 MiB, 86-93 MB and less collector CPU; with 32
	// MiB, 103 MB (over the 100 MB goal).
	DefaultSlack = 16 << 20
)

// Config tunes a Pacer.
type Config struct {
	// Threshold is the smallest reservation, in bytes, that engages the
	// Pacer (default DefaultThreshold).
	Threshold int64
	// Linger is how long the Pacer stays engaged after its last hold is
	// released (default DefaultLinger).
	Linger time.Duration
	// Slack is added to the limit: room for the collector over the
	// reservations, traded against CPU (default DefaultSlack; negative:
	// none).
	Slack int64
	// Release returns freed memory to the OS once the Pacer disengages.
	// Default: debug.FreeOSMemory, then memtrim.Trim.
	Release func()
}

// Pacer sets the Go runtime's soft memory limit from the reservations of
// the large requests in flight. Its methods are safe for concurrent use.
type Pacer struct {
	cfg Config
	// setLimit and goMemory are the runtime's, replaced in tests.
	setLimit func(int64) int64
	goMemory func() int64

	// mu guards everything below.
	mu sync.Mutex
	// held is the sum of the holds' reservations; holds counts them.
	held  int64
	holds int
	// engaged: the limit is ours. ceiling is the limit found before
	// engaging (restored after), base the Go memory of the idle server.
	engaged       bool
	ceiling, base int64
	// idle is the Go memory Settle last read.
	idle int64
	// most is the largest held during the engagement: the limit while it
	// lingers.
	most int64
	// linger fires disengage; gen tells a stale timer from the current one.
	linger *time.Timer
	gen    uint64
}

// New returns a Pacer with cfg's zero fields set to their defaults.
func New(cfg Config) *Pacer {
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	switch {
	case cfg.Slack == 0:
		cfg.Slack = DefaultSlack
	case cfg.Slack < 0:
		cfg.Slack = 0
	}
	if cfg.Release == nil {
		cfg.Release = func() {
			debug.FreeOSMemory()
			memtrim.Trim()
		}
	}
	return &Pacer{cfg: cfg, setLimit: debug.SetMemoryLimit, goMemory: idleGoMemory}
}

// Hold is one request's share of the limit. The zero Hold (and a nil
// *Hold) holds nothing; Resize may make it hold.
type Hold struct {
	p     *Pacer
	bytes int64
}

// Hold returns a hold of bytes, engaging the Pacer when bytes reaches the
// threshold. A nil Pacer returns nil, which holds nothing.
func (p *Pacer) Hold(bytes int64) *Hold {
	if p == nil {
		return nil
	}
	h := &Hold{p: p}
	h.Resize(bytes)
	return h
}

// Resize makes h hold bytes: a hold under the threshold holds nothing.
func (h *Hold) Resize(bytes int64) {
	if h == nil {
		return
	}
	if bytes < h.p.cfg.Threshold {
		bytes = 0
	}
	h.p.update(h, bytes)
}

// Release lets go of h. It is idempotent.
func (h *Hold) Release() {
	if h == nil {
		return
	}
	h.p.update(h, 0)
}

// update moves h to bytes and sets the limit.
func (p *Pacer) update(h *Hold, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytes == h.bytes {
		return
	}
	switch {
	case h.bytes == 0:
		p.holds++
	case bytes == 0:
		p.holds--
	}
	p.held += bytes - h.bytes
	h.bytes = bytes
	if p.holds > 0 {
		p.gen++ // a pending disengage is stale
		if !p.engaged {
			p.engaged = true
			p.ceiling = p.setLimit(-1)
			// The engaging request's message is already read (its hold is
			// taken once its size is known) and may be counted live by the
			// last collection: take it out, but never go below the last
			// idle reading.
			p.base = max(p.idle, p.goMemory()-bytes)
			p.most = 0
		}
		p.most = max(p.most, p.held)
		p.setLimit(min(p.ceiling, satAdd(p.base+p.cfg.Slack, p.held)))
		return
	}
	if !p.engaged {
		return
	}
	// The last hold is gone. Until Linger passes with no new hold, the
	// limit stays at the base plus the most held during the engagement:
	// the next large request's message arrives before its hold, on top of
	// this one's garbage, and without a limit GOGC=100 would let the heap
	// reach twice this request's live bytes. The base is kept too: read
	// now, it would count this request's live data as idle.
	p.setLimit(min(p.ceiling, satAdd(p.base+p.cfg.Slack, p.most)))
	p.gen++
	gen := p.gen
	p.linger = time.AfterFunc(p.cfg.Linger, func() { p.disengage(gen) })
}

// disengage ends an engagement when no hold came since gen, and returns
// the freed memory to the OS.
func (p *Pacer) disengage(gen uint64) {
	p.mu.Lock()
	if gen != p.gen || p.holds > 0 || !p.engaged {
		p.mu.Unlock()
		return
	}
	p.engaged = false
	p.setLimit(p.ceiling)
	p.mu.Unlock()
	p.cfg.Release()
	p.Settle()
}

// Settle records the Go memory of the idle server, the floor of the next
// engagement's base. Call it once the server is warmed up, after a
// collection (runtime.GC); the Pacer calls it after returning memory.
func (p *Pacer) Settle() {
	if p == nil {
		return
	}
	m := p.goMemory()
	p.mu.Lock()
	p.idle = m
	p.mu.Unlock()
}

// Stop cancels a pending disengage (for tests and shutdown); the limit it
// found is restored if no hold is left.
func (p *Pacer) Stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.linger != nil {
		p.linger.Stop()
	}
	p.gen++
	if p.engaged && p.holds == 0 {
		p.setLimit(p.ceiling)
		p.engaged = false
	}
}

// Limit reports the runtime's soft memory limit and whether the Pacer is
// engaged (for logs and tests).
func (p *Pacer) Limit() (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.setLimit(-1), p.engaged
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// idleGoMemory is the Go memory the soft limit compares with (mapped minus
// released), less the heap's free and unused pages and its objects, plus
// what the last collection found live: the runtime's own memory and the
// live heap, without the garbage of requests already over.
func idleGoMemory() int64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	v := make([]int64, len(s))
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = int64(s[i].Value.Uint64())
		}
	}
	return v[0] - v[1] - v[2] - v[3] - v[4] + v[5]
}
