package gcn

import (
	"context"
	"errors"
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
