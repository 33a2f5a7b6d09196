package admission

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// isOverloaded reports whether err is an admission refusal.
func isOverloaded(err error) bool {
	var e *gcnerr.Error
	return errors.As(err, &e) && e.Kind == gcnerr.Overloaded
}

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	maxQueue int
	queue    int
	inUse    int64
	admitted int
	refused  map[Reason]int
	waits    []time.Duration
}

func (r *recorder) QueueLength(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = n
	r.maxQueue = max(r.maxQueue, n)
}
func (r *recorder) InUse(n int64) { r.mu.Lock(); r.inUse = n; r.mu.Unlock() }
func (r *recorder) Admitted(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admitted++
	r.waits = append(r.waits, d)
}
func (r *recorder) Refused(reason Reason, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refused == nil {
		r.refused = map[Reason]int{}
	}
	r.refused[reason]++
}

func (r *recorder) refusals(reason Reason) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused[reason]
}

func newBudget(t *testing.T, bytes int64, maxQueue int, timeout time.Duration) (*Budget, *recorder) {
	t.Helper()
	rec := &recorder{}
	b := New(Options{Bytes: bytes, MaxQueue: maxQueue, QueueTimeout: timeout, Observer: rec})
	t.Cleanup(func() {
		if got := b.InUse(); got != 0 {
			t.Errorf("after the test %d bytes are still in use, want 0", got)
		}
	})
	return b, rec
}

// queued waits until the budget has n waiters.
func queued(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue length %d, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFitsAtOnce(t *testing.T) {
	b, rec := newBudget(t, 100, 0, 0)
	r1, err := b.Acquire(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Acquire(context.Background(), 40)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.InUse(); got != 100 {
		t.Errorf("in use %d, want 100", got)
	}
	// With no queue allowed, one more byte is refused at once.
	if _, err := b.Acquire(context.Background(), 1); !isOverloaded(err) || !strings.Contains(err.Error(), "--max-queue") {
		t.Errorf("full budget, no queue: err %v, want an overloaded error naming --max-queue", err)
	}
	r1()
	r1() // twice is harmless
	r2()
	if rec.admitted != 2 || rec.refusals(ReasonQueueFull) != 1 {
		t.Errorf("observer saw %d admitted and %v refused, want 2 and 1 queue_full", rec.admitted, rec.refused)
	}
}

func TestTooLargeRefusedAtOnce(t *testing.T) {
	b, rec := newBudget(t, 100, 10, time.Hour)
	start := time.Now()
	_, err := b.Acquire(context.Background(), 101)
	var e *gcnerr.Error
	if !errors.As(err, &e) || e.Kind != gcnerr.TooLarge || !strings.Contains(err.Error(), "more than the whole --max-inflight-bytes budget") {
		t.Fatalf("err %v, want a TooLarge error saying it exceeds the budget", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v, want an answer at once", d)
	}
	if rec.refusals(ReasonTooLarge) != 1 {
		t.Errorf("refusals %v, want one too_large", rec.refused)
	}
}

func TestQueueFull(t *testing.T) {
	b, rec := newBudget(t, 100, 2, time.Hour)
	hold, err := b.Acquire(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := b.Acquire(context.Background(), 50)
			if err != nil {
				t.Errorf("queued request: %v", err)
				return
			}
			release()
		}()
	}
	queued(t, b, 2)
	_, err = b.Acquire(context.Background(), 1)
	if !isOverloaded(err) || !strings.Contains(err.Error(), "2 waiting") {
		t.Errorf("third waiter: err %v, want an overloaded error saying 2 are waiting", err)
	}
	hold()
	wg.Wait()
	if rec.maxQueue != 2 || rec.refusals(ReasonQueueFull) != 1 {
		t.Errorf("observer: max queue %d, refusals %v; want 2 and one queue_full", rec.maxQueue, rec.refused)
	}
}

func TestQueueTimeout(t *testing.T) {
	b, rec := newBudget(t, 100, 10, 50*time.Millisecond)
	hold, err := b.Acquire(context.Background(), 80)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	start := time.Now()
	_, err = b.Acquire(context.Background(), 30)
	waited := time.Since(start)
	if !isOverloaded(err) || !strings.Contains(err.Error(), "--queue-timeout") {
		t.Fatalf("err %v, want an overloaded error naming --queue-timeout", err)
	}
	if waited < 50*time.Millisecond || waited > 2*time.Second {
		t.Errorf("waited %v, want about the 50ms queue timeout", waited)
	}
	if rec.refusals(ReasonTimeout) != 1 || rec.queue != 0 {
		t.Errorf("observer: refusals %v, queue %d; want one timeout and an empty queue", rec.refused, rec.queue)
	}
}

func TestDeadlineBeforeQueueTimeout(t *testing.T) {
	b, rec := newBudget(t, 100, 10, time.Hour)
	hold, err := b.Acquire(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.Acquire(ctx, 10)
	if !isOverloaded(err) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err %v, want an overloaded error naming the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waited %v, want about the 30ms deadline", d)
	}
	if rec.refusals(ReasonDeadline) != 1 {
		t.Errorf("refusals %v, want one deadline", rec.refused)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	b, rec := newBudget(t, 100, 10, time.Hour)
	hold, err := b.Acquire(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := b.Acquire(ctx, 10)
		done <- err
	}()
	queued(t, b, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	queued(t, b, 0)
	hold()
	if rec.refusals(ReasonCanceled) != 1 {
		t.Errorf("refusals %v, want one canceled", rec.refused)
	}
}

// TestFIFO: waiters are admitted in arrival order, and a request at the head
// is not overtaken by a smaller one behind it that would fit.
func TestFIFO(t *testing.T) {
	b, _ := newBudget(t, 100, 100, time.Hour)
	hold, err := b.Acquire(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int64{60, 30, 30, 10}
	releases := make([]chan func(), len(sizes))
	for i, n := range sizes {
		releases[i] = make(chan func(), 1)
		go func() {
			release, err := b.Acquire(context.Background(), n)
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
			releases[i] <- release
		}()
		queued(t, b, i+1) // enter the queue in index order
	}
	hold()
	// 60 and 30 fit; the second 30 does not, and the 10 behind it waits.
	r0, r1 := <-releases[0], <-releases[1]
	queued(t, b, 2)
	if got := b.InUse(); got != 90 {
		t.Errorf("in use %d, want 90 (the first two waiters)", got)
	}
	r0()
	r2, r3 := <-releases[2], <-releases[3]
	if got := b.InUse(); got != 70 {
		t.Errorf("in use %d, want 70", got)
	}
	r1()
	r2()
	r3()
}

func TestHeadTimeoutUnblocksOthers(t *testing.T) {
	b, _ := newBudget(t, 100, 10, time.Hour)
	hold, err := b.Acquire(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	ctx, cancel := context.WithCancel(context.Background())
	bigDone := make(chan error)
	go func() {
		_, err := b.Acquire(ctx, 50) // blocks the head
		bigDone <- err
	}()
	queued(t, b, 1)
	smallDone := make(chan error)
	go func() {
		release, err := b.Acquire(context.Background(), 30)
		if err == nil {
			release()
		}
		smallDone <- err
	}()
	queued(t, b, 2)
	cancel()
	<-bigDone
	select {
	case err := <-smallDone:
		if err != nil {
			t.Errorf("small request after the head left: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("small request still waiting after the head that blocked it left")
	}
}

func TestResize(t *testing.T) {
	b, _ := newBudget(t, 100, 10, time.Hour)
	ctx := context.Background()
	r, err := b.Reserve(ctx, 64)
	if err != nil {
		t.Fatal(err)
	}
	// A waiter for 60 is blocked until the reservation shrinks.
	done := make(chan func())
	go func() {
		release, err := b.Acquire(ctx, 60)
		if err != nil {
			t.Error(err)
		}
		done <- release
	}()
	queued(t, b, 1)
	if err := r.Resize(ctx, 30); err != nil {
		t.Fatal(err)
	}
	other := <-done
	if got := b.InUse(); got != 90 {
		t.Errorf("in use %d after shrink to 30 and admitting 60, want 90", got)
	}
	// Growing past the budget is refused; the reservation keeps its bytes.
	if err := r.Resize(ctx, 101); !errors.As(err, new(*gcnerr.Error)) {
		t.Errorf("grow past the budget: %v, want a refusal", err)
	}
	if got := r.Bytes(); got != 30 {
		t.Errorf("after a refused grow the reservation holds %d, want 30", got)
	}
	// Growing waits for the other holder, ahead of a new request.
	grown := make(chan error)
	go func() { grown <- r.Resize(ctx, 45) }()
	queued(t, b, 1)
	newcomer := make(chan func())
	go func() {
		release, err := b.Acquire(ctx, 20)
		if err != nil {
			t.Error(err)
		}
		newcomer <- release
	}()
	queued(t, b, 2)
	b.mu.Lock()
	first := b.queue[0].n
	b.mu.Unlock()
	if first != 15 {
		t.Errorf("head of the queue waits for %d bytes, want the grow's 15", first)
	}
	other()
	if err := <-grown; err != nil {
		t.Fatal(err)
	}
	if got := r.Bytes(); got != 45 {
		t.Errorf("after the grow the reservation holds %d, want 45", got)
	}
	(<-newcomer)()
	r.Release()
	r.Release()
	if err := r.Resize(ctx, 10); err == nil {
		t.Error("Resize after Release succeeded, want an error")
	}
}

func TestGrowTimesOut(t *testing.T) {
	b, _ := newBudget(t, 100, 0, 20*time.Millisecond)
	ctx := context.Background()
	r, err := b.Reserve(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	hold, err := b.Acquire(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	// --max-queue 0 refuses new waiters, but a grow waits (up to the timeout).
	err = r.Resize(ctx, 60)
	if !isOverloaded(err) || !strings.Contains(err.Error(), "--queue-timeout") {
		t.Errorf("grow with the budget full: %v, want a queue timeout", err)
	}
	hold()
	r.Release()
}

// TestConcurrentNeverOverBudget hammers the budget from many goroutines
// (run with -race): in-use never exceeds the budget, and all bytes come back.
func TestConcurrentNeverOverBudget(t *testing.T) {
	const limit = 1000
	b, rec := newBudget(t, limit, 64, 200*time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var inUse, peak int64
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := int64(50 + (g*37+i*11)%300)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%5)*time.Millisecond*20)
				r, err := b.Reserve(ctx, n)
				if err != nil {
					cancel()
					if !isOverloaded(err) && !errors.Is(err, context.Canceled) {
						t.Errorf("unexpected error %v", err)
					}
					continue
				}
				if i%3 == 0 {
					if err := r.Resize(ctx, n/2); err != nil {
						t.Errorf("shrink: %v", err)
					}
				} else if i%3 == 1 {
					if err := r.Resize(ctx, n+40); err != nil && !isOverloaded(err) {
						t.Errorf("grow: %v", err)
					}
				}
				mu.Lock()
				inUse += r.Bytes()
				peak = max(peak, inUse)
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				mu.Lock()
				inUse -= r.Bytes()
				mu.Unlock()
				r.Release()
				cancel()
			}
		}()
	}
	wg.Wait()
	if peak > limit {
		t.Errorf("peak in use %d, over the budget %d", peak, limit)
	}
	if rec.inUse != 0 || rec.queue != 0 {
		t.Errorf("observer ends with in use %d and queue %d, want 0 and 0", rec.inUse, rec.queue)
	}
	if rec.admitted == 0 {
		t.Error("nothing admitted")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 64 << 20: "64.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestGrowDeadlockBroken: when every byte in use is held by reservations
// waiting to grow, the newest is refused at once (not after the queue
// timeout), and the others go on once it gives its bytes back.
func TestGrowDeadlockBroken(t *testing.T) {
	b, rec := newBudget(t, 100, 10, time.Hour)
	ctx := context.Background()
	r1, err := b.Reserve(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Reserve(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	grown := make(chan error)
	go func() { grown <- r1.Resize(ctx, 80) }()
	queued(t, b, 1)
	start := time.Now()
	err = r2.Resize(ctx, 80)
	if !isOverloaded(err) || !strings.Contains(err.Error(), "need more") {
		t.Fatalf("second grow: %v, want an overloaded refusal of the deadlock", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused after %v, want at once", d)
	}
	r2.Release()
	if err := <-grown; err != nil {
		t.Errorf("first grow after the other gave up: %v", err)
	}
	r1.Release()
	if rec.refusals(ReasonDeadlock) != 1 {
		t.Errorf("refusals %v, want one deadlock", rec.refused)
	}
}

// TestReleaseDuringResize: a Release from another goroutine returns at once
// while the reservation waits to grow (it used to wait for the grow, up to
// the queue timeout, holding the reservation's lock), the grow then fails,
// and every byte is given back.
func TestReleaseDuringResize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := New(Options{Bytes: 100, MaxQueue: 4, QueueTimeout: 5 * time.Second})
	r, err := b.Reserve(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.Reserve(ctx, 40)
	if err != nil {
		t.Fatal(err)
	}
	grown := make(chan error, 1)
	go func() { grown <- r.Resize(ctx, 80) }()
	// Wait until the grow is queued.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		queued := len(b.queue)
		b.mu.Unlock()
		if queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the grow never queued")
		}
	}
	released := make(chan struct{})
	start := time.Now()
	go func() { r.Release(); close(released) }()
	select {
	case <-released:
	case <-time.After(time.Second):
		t.Fatalf("Release blocked for %v while the reservation waited to grow", time.Since(start))
	}
	select {
	case err := <-grown:
		if err == nil {
			t.Error("Resize succeeded on a released reservation, want an error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Resize still waiting 2s after Release")
	}
	if got := b.InUse(); got != 40 {
		t.Errorf("in use after Release and the failed grow: got %d, want 40 (the other reservation)", got)
	}
	other.Release()
	if got := b.InUse(); got != 0 {
		t.Errorf("in use after every Release: got %d, want 0", got)
	}
}
