// Package admission bounds the memory that requests being processed may
// hold at once. Each request reserves its cost in bytes before it does the
// work that needs the memory; when the budget is spent, requests wait in a
// bounded first-in, first-out queue for up to a queue timeout (or their
// deadline, whichever comes first) and are then refused. A refusal is an
// overloaded error whose message says why, so the client can back off and
// retry; the server never takes more work than it can hold.
package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// Options configure a Budget. The server fills them from --max-inflight-bytes,
// --max-queue and --queue-timeout.
type Options struct {
	// Bytes is the budget: the most bytes all admitted reservations may
	// hold together. Must be positive.
	Bytes int64
	// MaxQueue is the most requests that may wait at once; one more is
	// refused at once. 0 means no waiting: a request that does not fit now
	// is refused.
	MaxQueue int
	// QueueTimeout is the longest a request waits; 0 means it waits only for
	// its own deadline.
	QueueTimeout time.Duration
	// Observer, if not nil, receives queue lengths, waits and refusals
	// (internal/metrics implements it).
	Observer Observer
}

// Reason says why a request was refused.
type Reason string

// The reasons for a refusal, used as metric label values.
const (
	// ReasonTooLarge: the request needs more than the whole budget.
	ReasonTooLarge Reason = "too_large"
	// ReasonQueueFull: --max-queue requests were already waiting.
	ReasonQueueFull Reason = "queue_full"
	// ReasonTimeout: the request waited --queue-timeout.
	ReasonTimeout Reason = "timeout"
	// ReasonDeadline: the request's own deadline came before memory did.
	ReasonDeadline Reason = "deadline"
	// ReasonCanceled: the client went away while waiting.
	ReasonCanceled Reason = "canceled"
	// ReasonDeadlock: a growing reservation was refused because every byte
	// in use was held by reservations waiting to grow: none could proceed.
	ReasonDeadlock Reason = "deadlock"
)

// Observer is told what the budget does. Calls come with the budget's lock
// held: they must be quick and must not call back into the budget.
type Observer interface {
	// QueueLength reports the number of waiting requests after a change.
	QueueLength(n int)
	// InUse reports the bytes held by admitted reservations after a change.
	InUse(bytes int64)
	// Admitted reports one admission and how long it waited (0 when it fit
	// at once).
	Admitted(wait time.Duration)
	// Refused reports one refusal, why, and how long it waited first.
	Refused(reason Reason, wait time.Duration)
}

// Budget is a memory budget with a FIFO wait queue. It is safe for
// concurrent use.
type Budget struct {
	limit    int64
	maxQueue int
	timeout  time.Duration
	obs      Observer

	mu   sync.Mutex
	used int64 // bytes held by admitted reservations; guarded by mu
	held int   // admitted reservations holding bytes; guarded by mu
	// queue holds the waiters in the order they are served: growing
	// reservations first (they already hold memory, and making them wait
	// behind new requests could leave every holder waiting for every
	// other), then new requests in arrival order. Guarded by mu.
	queue []*waiter
	grows int // how many of queue's first entries are growing reservations; guarded by mu
	// blocked is the bytes held by reservations waiting to grow: when it
	// is all of used, nothing will ever be released. Guarded by mu.
	blocked int64
}

// waiter is one request in the queue.
type waiter struct {
	n     int64         // bytes it waits for
	held  int64         // bytes a growing reservation already holds
	ready chan struct{} // closed when granted or refused
	// granted is set, under Budget.mu, when the bytes were added to used;
	// refused when the waiter was dropped to break a deadlock.
	granted, refused bool
}

// New returns a budget. It panics if o.Bytes is not positive or o.MaxQueue
// is negative: the server validates its flags before.
func New(o Options) *Budget {
	if o.Bytes <= 0 || o.MaxQueue < 0 || o.QueueTimeout < 0 {
		panic(fmt.Sprintf("admission: invalid options %+v", o))
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return &Budget{limit: o.Bytes, maxQueue: o.MaxQueue, timeout: o.QueueTimeout, obs: o.Observer}
}

// Bytes returns the budget.
func (b *Budget) Bytes() int64 { return b.limit }

// InUse returns the bytes admitted reservations hold now.
func (b *Budget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Acquire reserves n bytes, waiting for them if need be, and returns the
// function that gives them back (safe to call more than once). See Reserve
// for when it refuses.
func (b *Budget) Acquire(ctx context.Context, n int64) (release func(), err error) {
	r, err := b.Reserve(ctx, n)
	if err != nil {
		return nil, err
	}
	return r.Release, nil
}

// Reserve reserves n bytes and returns the reservation, which can later
// grow or shrink (Resize) and must be released. It refuses at once a
// request larger than the whole budget, or one that would have to wait
// behind a full queue; otherwise it waits in FIFO order until the bytes are
// free, the queue timeout passes or ctx ends. Every refusal is a gcn.Error
// saying why: kind TooLarge for a request larger than the budget (retrying
// cannot help), kind Overloaded otherwise (retry later); both are gRPC
// RESOURCE_EXHAUSTED. A cancelled ctx returns ctx's error.
func (b *Budget) Reserve(ctx context.Context, n int64) (*Reservation, error) {
	n = max(n, 0)
	if err := b.wait(ctx, n, 0, false); err != nil {
		return nil, err
	}
	return &Reservation{b: b, n: n}, nil
}

// wait admits n more bytes or returns why not. held > 0 (or grow) makes it
// a growing reservation's wait: ahead of new requests, exempt from the
// queue bound.
func (b *Budget) wait(ctx context.Context, n, held int64, grow bool) error {
	if n > b.limit {
		b.mu.Lock()
		b.obs.Refused(ReasonTooLarge, 0)
		b.mu.Unlock()
		// A size limit, not a load condition: retrying cannot help.
		return gcnerr.New(gcnerr.TooLarge, "request needs %s of memory, more than the whole --max-inflight-bytes budget (%s): it can never be admitted; send a smaller graph or raise --max-inflight-bytes",
			formatBytes(n), formatBytes(b.limit))
	}
	b.mu.Lock()
	// A grow may pass queued new requests, so it only checks for other grows.
	ahead := len(b.queue)
	if grow {
		ahead = b.grows
	}
	if ahead == 0 && b.used+n <= b.limit {
		b.admitLocked(n, grow)
		b.obs.Admitted(0)
		b.mu.Unlock()
		return nil
	}
	if !grow && len(b.queue) >= b.maxQueue {
		used, held, queued := b.used, b.held, len(b.queue)
		b.obs.Refused(ReasonQueueFull, 0)
		b.mu.Unlock()
		return overloaded("server is at its memory budget: %s of %s (--max-inflight-bytes) held by %d requests and %d waiting, the most --max-queue allows; retry later",
			formatBytes(used), formatBytes(b.limit), held, queued)
	}
	w := &waiter{n: n, held: held, ready: make(chan struct{})}
	if grow {
		b.queue = slices.Insert(b.queue, b.grows, w)
		b.grows++
		b.blocked += held
	} else {
		b.queue = append(b.queue, w)
	}
	b.obs.QueueLength(len(b.queue))
	b.breakDeadlockLocked()
	b.mu.Unlock()

	start := time.Now()
	var timeout <-chan time.Time
	if b.timeout > 0 {
		t := time.NewTimer(b.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var reason Reason
	select {
	case <-w.ready:
		b.mu.Lock()
		defer b.mu.Unlock()
		waited := time.Since(start)
		if w.refused {
			b.obs.Refused(ReasonDeadlock, waited)
			return overloaded("server is at its memory budget: all %s (--max-inflight-bytes) is held by requests that each need more to go on; this one was refused after %s so the others can finish; retry later",
				formatBytes(b.limit), waited.Round(time.Millisecond))
		}
		b.obs.Admitted(waited)
		return nil
	case <-timeout:
		reason = ReasonTimeout
	case <-ctx.Done():
		reason = ReasonDeadline
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = ReasonCanceled
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	waited := time.Since(start)
	if w.granted {
		// Granted while the timer fired: take it, the work can still start.
		b.obs.Admitted(waited)
		return nil
	}
	if w.refused {
		b.obs.Refused(ReasonDeadlock, waited)
		return overloaded("server is at its memory budget: all %s (--max-inflight-bytes) is held by requests that each need more to go on; this one was refused after %s so the others can finish; retry later",
			formatBytes(b.limit), waited.Round(time.Millisecond))
	}
	i := slices.Index(b.queue, w)
	b.queue = slices.Delete(b.queue, i, i+1)
	if i < b.grows {
		b.grows--
		b.blocked -= w.held
	}
	b.obs.QueueLength(len(b.queue))
	// w may have been the head that blocked smaller requests behind it.
	b.grantLocked()
	b.obs.Refused(reason, waited)
	switch reason {
	case ReasonCanceled:
		return ctx.Err()
	case ReasonDeadline:
		return overloaded("request deadline passed after waiting %s for %s of memory: %s of %s (--max-inflight-bytes) held by %d requests, %d waiting; retry later",
			waited.Round(time.Millisecond), formatBytes(n), formatBytes(b.used), formatBytes(b.limit), b.held, len(b.queue))
	}
	return overloaded("waited %s (--queue-timeout) for %s of memory: %s of %s (--max-inflight-bytes) held by %d requests, %d waiting; retry later",
		waited.Round(time.Millisecond), formatBytes(n), formatBytes(b.used), formatBytes(b.limit), b.held, len(b.queue))
}

// admitLocked adds n bytes to the budget's use; b.mu is held. A grow adds
// bytes to an already counted holder.
func (b *Budget) admitLocked(n int64, grow bool) {
	b.used += n
	if !grow {
		b.held++
	}
	b.obs.InUse(b.used)
}

// grantLocked admits waiters from the head of the queue while they fit;
// b.mu is held. Strict FIFO: a small request behind a big one waits, so a
// big request is never starved by a stream of small ones.
func (b *Budget) grantLocked() {
	n := 0
	for n < len(b.queue) && b.used+b.queue[n].n <= b.limit {
		w := b.queue[n]
		grow := n < b.grows
		if grow {
			b.blocked -= w.held
		}
		b.admitLocked(w.n, grow)
		w.granted = true
		close(w.ready)
		n++
	}
	if n > 0 {
		b.grows -= min(n, b.grows)
		b.queue = slices.Delete(b.queue, 0, n)
		b.obs.QueueLength(len(b.queue))
	}
	b.breakDeadlockLocked()
}

// breakDeadlockLocked refuses growing reservations, newest first, while
// the head of the queue cannot fit and every byte in use is held by
// reservations waiting to grow: no one would ever release memory, and
// each would wait out its timeout holding what it has. A refused one gives
// its bytes back when its request ends. b.mu is held.
func (b *Budget) breakDeadlockLocked() {
	for b.grows > 0 && b.used+b.queue[0].n > b.limit && b.used == b.blocked {
		w := b.queue[b.grows-1]
		b.queue = slices.Delete(b.queue, b.grows-1, b.grows)
		b.grows--
		b.blocked -= w.held
		w.refused = true
		close(w.ready)
		b.obs.QueueLength(len(b.queue))
	}
}

// giveBack returns n bytes; last says the holder is done.
func (b *Budget) giveBack(n int64, last bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if last {
		b.held--
	}
	b.obs.InUse(b.used)
	b.grantLocked()
}

// Reservation is bytes held in a Budget by one request. Its methods are
// meant for the goroutine handling that request; Release may also be called
// from others, and more than once.
type Reservation struct {
	b *Budget

	mu       sync.Mutex
	n        int64 // bytes held; guarded by mu
	released bool  // guarded by mu
}

// Bytes returns the bytes the reservation holds.
func (r *Reservation) Bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Resize makes the reservation hold n bytes. Shrinking returns the
// difference at once (waking waiters); growing waits for the difference as
// Reserve does, ahead of new requests, and refuses as Reserve does (a
// growing request is never refused for a full queue). After a refusal the
// reservation still holds what it held before; the caller releases it.
//
// The reservation's lock is not held while a grow waits, so a Release from
// another goroutine (a request's cleanup, a drain) returns at once; the
// grow then fails, and any bytes granted to it are given back.
func (r *Reservation) Resize(ctx context.Context, n int64) error {
	n = max(n, 0)
	r.mu.Lock()
	if r.released {
		r.mu.Unlock()
		return errors.New("admission: Resize after Release")
	}
	held := r.n
	if n <= held {
		if n < held {
			r.n = n
			r.b.giveBack(held-n, false)
		}
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	if n > r.b.limit {
		return r.b.wait(ctx, n, held, true) // refused: too large
	}
	if err := r.b.wait(ctx, n-held, held, true); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released {
		// Release gave back what was held before the grow; the grow's
		// bytes are returned here.
		r.b.giveBack(n-held, false)
		return errors.New("admission: reservation released while it waited to grow")
	}
	r.n = n
	return nil
}

// Release gives the reservation's bytes back. Later calls do nothing.
func (r *Reservation) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released {
		return
	}
	r.released = true
	r.b.giveBack(r.n, true)
	r.n = 0
}

type nopObserver struct{}

func (nopObserver) QueueLength(int)               {}
func (nopObserver) InUse(int64)                   {}
func (nopObserver) Admitted(time.Duration)        {}
func (nopObserver) Refused(Reason, time.Duration) {}

// formatBytes writes n in the largest binary unit that keeps one decimal.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
