package gcpace

import (
	"math"
	"sync"
	"testing"
	"time"
)

// fakeRuntime stands in for debug.SetMemoryLimit and the idle Go memory.
type fakeRuntime struct {
	mu       sync.Mutex
	limit    int64
	reads    int // goMemory calls
	releases chan struct{}
}

func newTestPacer(t *testing.T, linger time.Duration) (*Pacer, *fakeRuntime) {
	t.Helper()
	f := &fakeRuntime{limit: math.MaxInt64, releases: make(chan struct{}, 8)}
	p := New(Config{Threshold: 100, Linger: linger, Slack: -1, Release: func() { f.releases <- struct{}{} }})
	p.setLimit = func(n int64) int64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		old := f.limit
		if n >= 0 {
			f.limit = n
		}
		return old
	}
	p.goMemory = func() int64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reads++
		return 1000
	}
	p.Settle()
	t.Cleanup(p.Stop)
	return p, f
}

func (f *fakeRuntime) get() (int64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limit, f.reads
}

func TestPacerLimitFollowsHolds(t *testing.T) {
	p, f := newTestPacer(t, time.Hour)
	small := p.Hold(99)
	if l, _ := f.get(); l != math.MaxInt64 {
		t.Fatalf("a hold under the threshold set the limit to %d, want it untouched", l)
	}
	a := p.Hold(200)
	if l, _ := f.get(); l != 1200 {
		t.Fatalf("one hold of 200: limit %d, want base 1000 + 200", l)
	}
	b := p.Hold(50) // under the threshold: nothing
	b.Resize(300)   // now it holds
	if l, _ := f.get(); l != 1500 {
		t.Fatalf("holds of 200 and 300: limit %d, want 1500", l)
	}
	a.Release()
	a.Release() // idempotent
	if l, _ := f.get(); l != 1300 {
		t.Fatalf("after releasing 200: limit %d, want 1300", l)
	}
	small.Release()
	b.Release()
	if l, reads := f.get(); l != 1500 || reads != 2 {
		t.Fatalf("all released, lingering: limit %d (want base + the most held, 1500), base read %d times (want 2: Settle and the engagement)", l, reads)
	}
	if _, engaged := p.Limit(); !engaged {
		t.Fatalf("engaged = false right after the last hold, want true until Linger passes")
	}
}

func TestPacerCeiling(t *testing.T) {
	p, f := newTestPacer(t, time.Hour)
	f.limit = 1100 // e.g. GOMEMLIMIT from a cgroup
	h := p.Hold(500)
	if l, _ := f.get(); l != 1100 {
		t.Fatalf("limit %d, want the ceiling 1100 (base 1000 + 500 is above it)", l)
	}
	h.Release()
	if l, _ := f.get(); l != 1100 {
		t.Fatalf("after release: limit %d, want the ceiling 1100", l)
	}
	p.Stop()
	if l, _ := f.get(); l != 1100 {
		t.Fatalf("after Stop: limit %d, want the ceiling 1100", l)
	}
}

func TestPacerLingerAndRelease(t *testing.T) {
	p, f := newTestPacer(t, 50*time.Millisecond)
	h := p.Hold(200)
	h.Release()
	// A new hold within Linger keeps the engagement: the base is not read
	// again (it would include the last request's live data) and nothing is
	// released.
	h = p.Hold(200)
	if _, reads := f.get(); reads != 2 {
		t.Fatalf("base read %d times across back-to-back holds, want 2 (Settle, one engagement)", reads)
	}
	select {
	case <-f.releases:
		t.Fatalf("memory released while a hold is in flight")
	case <-time.After(120 * time.Millisecond):
	}
	h.Release()
	select {
	case <-f.releases:
	case <-time.After(5 * time.Second):
		t.Fatalf("memory not released %v after the last hold", 5*time.Second)
	}
	// Settle runs after Release, on the timer's goroutine.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, reads := f.get(); reads == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Settle after the release")
		}
	}
	if l, engaged := p.Limit(); engaged || l != math.MaxInt64 {
		t.Fatalf("after Linger: engaged %v, limit %d, want the ceiling back", engaged, l)
	}
	p.Hold(200).Release()
	if _, reads := f.get(); reads != 4 {
		t.Fatalf("base read %d times, want 4: Settle after the release, then a new engagement", reads)
	}
}

func TestPacerNil(t *testing.T) {
	var p *Pacer
	h := p.Hold(1 << 40)
	h.Resize(1 << 41)
	h.Release()
	p.Stop()
}

func TestPacerConcurrent(t *testing.T) {
	p, f := newTestPacer(t, time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				h := p.Hold(int64(50 * (i + j%4)))
				h.Resize(int64(100 + j))
				h.Release()
			}
		}()
	}
	wg.Wait()
	p.Stop()
	if l, _ := f.get(); l != math.MaxInt64 {
		t.Fatalf("after every hold is released: limit %d, want the ceiling", l)
	}
}

// TestPacerBaseExcludesEngagingRequest: the Go memory read at engagement
// may count the engaging request's message; the base leaves its hold out,
// down to the idle reading.
func TestPacerBaseExcludesEngagingRequest(t *testing.T) {
	p, f := newTestPacer(t, time.Hour)
	p.goMemory = func() int64 { return 1000 + 150 } // idle 1000 + the message
	h := p.Hold(200)
	if l, _ := f.get(); l != 1200 {
		t.Fatalf("limit %d, want the idle 1000 + 200", l)
	}
	h.Release()
	p.Stop()
	p.goMemory = func() int64 { return 5000 } // the idle server grew
	h = p.Hold(200)
	if l, _ := f.get(); l != 5000 {
		t.Fatalf("limit %d, want 5000 - 200 + 200", l)
	}
	h.Release()
}

// TestPacerSlack: the limit is the base, the holds and the slack.
func TestPacerSlack(t *testing.T) {
	p, f := newTestPacer(t, time.Hour)
	p.cfg.Slack = 30
	h := p.Hold(200)
	if l, _ := f.get(); l != 1230 {
		t.Fatalf("limit %d, want base 1000 + 200 + slack 30", l)
	}
	h.Release()
	if l, _ := f.get(); l != 1230 {
		t.Fatalf("lingering: limit %d, want 1230", l)
	}
	if got := New(Config{}).cfg.Slack; got != DefaultSlack {
		t.Fatalf("default slack %d, want %d", got, DefaultSlack)
	}
}

// TestIdleGoMemory: the real reading is positive and below what the
// runtime has mapped.
func TestIdleGoMemory(t *testing.T) {
	if got := idleGoMemory(); got <= 0 || got > 1<<40 {
		t.Fatalf("idleGoMemory() = %d, want a positive size", got)
	}
}
