package gcn

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeModel stands in for the model to test the batcher's plumbing only:
// it records batch sizes and can block.
type fakeModel struct {
	mu      sync.Mutex
	batches []int // nodes per run; guarded by mu
	release chan struct{}
}

func (f *fakeModel) predict(ctx context.Context, g Tensors) (Prediction, error) {
	f.mu.Lock()
	f.batches = append(f.batches, g.NumNodes)
	f.mu.Unlock()
	if f.release != nil {
		<-f.release
	}
	return Prediction{NumClasses: 1, Probabilities: make([]float32, g.NumNodes),
		ClassIndex: make([]int32, g.NumNodes), Scores: make([]float32, g.NumNodes)}, nil
}

func TestBigGraphBypassesBatching(t *testing.T) {
	f := &fakeModel{}
	b := newBatcher(f, BatchOptions{MaxNodes: 10, MaxEdges: 10, MaxDelay: time.Millisecond, Workers: 1})
	defer b.close()
	p, err := b.predict(context.Background(), Tensors{NumNodes: 11, Features: make([]float32, 11)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Timing.BatchGraphs != 0 || len(p.Scores) != 11 {
		t.Errorf("BatchGraphs %d, %d scores; want 0 (ran alone) and 11", p.Timing.BatchGraphs, len(p.Scores))
	}
}

func TestBatchRespectsBounds(t *testing.T) {
	f := &fakeModel{}
	b := newBatcher(f, BatchOptions{MaxNodes: 10, MaxEdges: 100, MaxDelay: 20 * time.Millisecond, Workers: 1})
	defer b.close()
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if _, err := b.predict(context.Background(), Tensors{NumNodes: 3, Features: make([]float32, 3)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.batches {
		if n > 10 {
			t.Errorf("a batch of %d nodes, want <= 10", n)
		}
		total += n
	}
	if total != 36 {
		t.Errorf("batches covered %d nodes, want 36", total)
	}
}

func TestCanceledWhileQueued(t *testing.T) {
	f := &fakeModel{release: make(chan struct{})}
	b := newBatcher(f, BatchOptions{MaxDelay: time.Millisecond, Workers: 1})
	defer b.close()
	// The first call occupies the only worker.
	first := make(chan error, 1)
	go func() {
		_, err := b.predict(context.Background(), Tensors{NumNodes: 1, Features: make([]float32, 1)})
		first <- err
	}()
	for {
		f.mu.Lock()
		started := len(f.batches) > 0
		f.mu.Unlock()
		if started {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := b.predict(ctx, Tensors{NumNodes: 1, Features: make([]float32, 1)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued call past its deadline: %v, want DeadlineExceeded", err)
	}
	close(f.release)
	if err := <-first; err != nil {
		t.Errorf("first call: %v", err)
	}
}

func TestClosedBatcherRefuses(t *testing.T) {
	b := newBatcher(&fakeModel{}, BatchOptions{})
	b.close()
	_, err := b.predict(context.Background(), Tensors{NumNodes: 1, Features: make([]float32, 1)})
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Predict after Close: %v, want ErrClosed", err)
	}
}

// TestLoneRequestDoesNotWait: with nobody else in the batcher, a request
// runs at once rather than waiting out MaxDelay for company.
func TestLoneRequestDoesNotWait(t *testing.T) {
	f := &fakeModel{}
	b := newBatcher(f, BatchOptions{MaxDelay: time.Second, Workers: 1})
	defer b.close()
	start := time.Now()
	if _, err := b.predict(context.Background(), Tensors{NumNodes: 1, Features: make([]float32, 1)}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a lone request took %v with MaxDelay 1s, want no batching wait", d)
	}
}

// shortModel runs a lone graph after release1 and a merged batch after
// releaseMerged, answering the batch with too few rows, so that split
// panics after handing the first job its rows.
type shortModel struct {
	release1, releaseMerged chan struct{}
	mergedStarted           chan struct{}
}

func (f *shortModel) predict(ctx context.Context, g Tensors) (Prediction, error) {
	n := g.NumNodes
	if n == 1 {
		<-f.release1
	} else {
		close(f.mergedStarted)
		<-f.releaseMerged
		n = 2 // the first job's rows only
	}
	return Prediction{NumClasses: 1, Probabilities: make([]float32, n),
		ClassIndex: make([]int32, n), Scores: make([]float32, n)}, nil
}

// TestPanicAfterPartialSplitDoesNotBlockWorker: when split panics after it
// answered some jobs, the recovery answers only the others. Before, it sent
// a second result to a job whose caller had gone (its context ended), which
// blocked the worker for good: the other job never got an answer and every
// later request waited.
func TestPanicAfterPartialSplitDoesNotBlockWorker(t *testing.T) {
	f := &shortModel{release1: make(chan struct{}), releaseMerged: make(chan struct{}), mergedStarted: make(chan struct{})}
	b := newBatcher(f, BatchOptions{MaxDelay: time.Second, Workers: 1})
	defer func() {
		done := make(chan struct{})
		go func() { b.close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("close blocked: the worker is stuck")
		}
	}()
	graph := func(n int) Tensors { return Tensors{NumNodes: n, Features: make([]float32, n)} }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// C occupies the only worker while A and B queue, so A and B form one batch.
	c := make(chan error, 1)
	go func() { _, err := b.predict(ctx, graph(1)); c <- err }()
	for b.waiting.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	ctxA, cancelA := context.WithCancel(ctx)
	a, bErr := make(chan error, 1), make(chan error, 1)
	go func() { _, err := b.predict(ctxA, graph(2)); a <- err }()
	for b.waiting.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	go func() { _, err := b.predict(ctx, graph(2)); bErr <- err }()
	for b.waiting.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	close(f.release1)
	if err := <-c; err != nil {
		t.Fatalf("C: %v", err)
	}
	select {
	case <-f.mergedStarted:
	case <-ctx.Done():
		t.Fatal("A and B never ran as one batch")
	}
	cancelA() // A's caller leaves: its result slot stays full once split answers it
	if err := <-a; !errors.Is(err, context.Canceled) {
		t.Errorf("A: %v, want Canceled", err)
	}
	close(f.releaseMerged)
	if err := <-bErr; err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("B: %v, want the batch's panic (not a hang until the deadline)", err)
	}
	// The worker is free: a later request runs.
	late := make(chan error, 1)
	go func() { _, err := b.predict(ctx, graph(1)); late <- err }()
	select {
	case err := <-late:
		if err != nil {
			t.Errorf("a request after the panic: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a request after the panic got no answer: the worker is blocked")
	}
}
