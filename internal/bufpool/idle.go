package bufpool

import (
	"sync"
	"time"
)

// idleSet holds idle buffers of type B by size class, within a bound on
// their bytes and on how long each is kept. Pool (mapped bytes) and Kept
// (heap values that hold pointers) share it: one pool implementation.
type idleSet[B any] struct {
	maxBytes int64
	timeout  time.Duration
	// release gives up a buffer the set no longer keeps (unmaps it, or
	// drops it for the collector). Called with mu held.
	release func(b B, class int)

	mu     sync.Mutex
	lists  map[int][]idleEntry[B] // by class, most recently kept last
	bytes  int64                  // the classes of every buffer held
	timer  *time.Timer            // expires old buffers; nil when none is held
	closed bool
}

type idleEntry[B any] struct {
	b     B
	since time.Time
}

func newIdleSet[B any](maxBytes int64, timeout time.Duration, release func(B, int)) *idleSet[B] {
	return &idleSet[B]{maxBytes: maxBytes, timeout: timeout, release: release, lists: map[int][]idleEntry[B]{}}
}

// take returns the most recently kept buffer of class, if any.
func (s *idleSet[B]) take(class int) (B, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLocked(class)
}

// takeLargest returns the most recently kept buffer of the largest class
// held, if any.
func (s *idleSet[B]) takeLargest() (B, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := -1
	for class, list := range s.lists {
		if len(list) > 0 && class > best {
			best = class
		}
	}
	return s.takeLocked(best)
}

// takeLocked is take with mu held.
func (s *idleSet[B]) takeLocked(class int) (B, bool) {
	list := s.lists[class]
	if len(list) == 0 {
		var zero B
		return zero, false
	}
	e := list[len(list)-1]
	list[len(list)-1] = idleEntry[B]{}
	s.lists[class] = list[:len(list)-1]
	s.bytes -= int64(class)
	return e.b, true
}

// keep holds b, of class bytes, for reuse; over the bound, or once closed,
// it releases b instead.
func (s *idleSet[B]) keep(b B, class int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.bytes+int64(class) > s.maxBytes {
		s.release(b, class)
		return
	}
	s.lists[class] = append(s.lists[class], idleEntry[B]{b: b, since: time.Now()})
	s.bytes += int64(class)
	if s.timer == nil {
		s.timer = time.AfterFunc(s.timeout, s.expire)
	}
}

// expire releases the buffers held for timeout and schedules itself again
// while any are left.
func (s *idleSet[B]) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if s.closed {
		return
	}
	now := time.Now()
	next := time.Duration(-1)
	for class, list := range s.lists {
		kept := list[:0]
		for _, e := range list {
			if age := now.Sub(e.since); age >= s.timeout {
				s.bytes -= int64(class)
				s.release(e.b, class)
				continue
			} else if left := s.timeout - age; next < 0 || left < next {
				next = left
			}
			kept = append(kept, e)
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(s.lists, class)
		} else {
			s.lists[class] = kept
		}
	}
	if next >= 0 {
		s.timer = time.AfterFunc(next, s.expire)
	}
}

// idleBytes is the bytes held.
func (s *idleSet[B]) idleBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// close releases everything held and keeps nothing from now on.
func (s *idleSet[B]) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	for class, list := range s.lists {
		for _, e := range list {
			s.bytes -= int64(class)
			s.release(e.b, class)
		}
	}
	clear(s.lists)
}
