package batch_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/batch"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infer"
	"github.com/gcnserve/gcnserve/internal/infer/infertest"
)

// TestBatchedEqualsUnbatched: every graph's batched result equals its
// unbatched result within 1e-6, and batches really formed.
func TestBatchedEqualsUnbatched(t *testing.T) {
	m := infertest.OpenKarate(t, infer.Options{})
	b := batch.New(m, batch.Options{MaxDelay: 5 * time.Millisecond, Workers: 1})
	t.Cleanup(func() { b.Close() })

	const graphs = 96
	inputs := make([]infer.Graph, graphs)
	want := make([]infer.Prediction, graphs)
	for i := range graphs {
		r := rand.New(rand.NewPCG(uint64(i), 3))
		n := 1 + r.IntN(40)
		inputs[i] = infertest.RandomGraph(uint64(i), n, r.IntN(3*n), m.Info().FeatureDim)
		p, err := m.Predict(context.Background(), inputs[i])
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p
	}

	got := make([]infer.Prediction, graphs)
	errs := make([]error, graphs)
	var wg sync.WaitGroup
	for i := range graphs {
		wg.Go(func() { got[i], errs[i] = b.Predict(context.Background(), inputs[i]) })
	}
	wg.Wait()

	var worst float64
	merged := 0
	for i := range graphs {
		if errs[i] != nil {
			t.Fatalf("graph %d: %v", i, errs[i])
		}
		d := max(golden.MaxAbsDiff(got[i].Probabilities, want[i].Probabilities),
			golden.MaxAbsDiff(got[i].Scores, want[i].Scores))
		worst = max(worst, d)
		if d > 1e-6 {
			t.Errorf("graph %d (%d nodes): batched differs from unbatched by %.3g, want <= 1e-6", i, inputs[i].NumNodes, d)
		}
		for k := range got[i].ClassIndex {
			if got[i].ClassIndex[k] != want[i].ClassIndex[k] && !golden.NearTie(want[i].Probabilities[k*2:k*2+2], 1e-6) {
				t.Errorf("graph %d node %d: class %d batched, %d alone", i, k, got[i].ClassIndex[k], want[i].ClassIndex[k])
			}
		}
		if got[i].Timing.BatchGraphs > 1 {
			merged++
		}
	}
	t.Logf("%d of %d graphs ran merged with others; max |batched - unbatched| = %.2g", merged, graphs, worst)
	if merged == 0 {
		t.Error("no graph ran in a merged batch: the test proved nothing")
	}
}

// fakeModel stands in for the model to test the batcher's plumbing only:
// it records batch sizes and can block.
type fakeModel struct {
	mu      sync.Mutex
	batches []int // nodes per run; guarded by mu
	release chan struct{}
}

func (f *fakeModel) Info() infer.Info { return infer.Info{FeatureDim: 1, NumClasses: 1} }

func (f *fakeModel) Predict(ctx context.Context, g infer.Graph) (infer.Prediction, error) {
	f.mu.Lock()
	f.batches = append(f.batches, g.NumNodes)
	f.mu.Unlock()
	if f.release != nil {
		<-f.release
	}
	return infer.Prediction{NumClasses: 1, Probabilities: make([]float32, g.NumNodes),
		ClassIndex: make([]int32, g.NumNodes), Scores: make([]float32, g.NumNodes)}, nil
}

func TestBigGraphBypassesBatching(t *testing.T) {
	f := &fakeModel{}
	b := batch.New(f, batch.Options{MaxNodes: 10, MaxEdges: 10, MaxDelay: time.Millisecond, Workers: 1})
	defer b.Close()
	p, err := b.Predict(context.Background(), infer.Graph{NumNodes: 11, Features: make([]float32, 11)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Timing.BatchGraphs != 0 || len(p.Scores) != 11 {
		t.Errorf("BatchGraphs %d, %d scores; want 0 (ran alone) and 11", p.Timing.BatchGraphs, len(p.Scores))
	}
}

func TestBatchRespectsBounds(t *testing.T) {
	f := &fakeModel{}
	b := batch.New(f, batch.Options{MaxNodes: 10, MaxEdges: 100, MaxDelay: 20 * time.Millisecond, Workers: 1})
	defer b.Close()
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if _, err := b.Predict(context.Background(), infer.Graph{NumNodes: 3, Features: make([]float32, 3)}); err != nil {
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
	b := batch.New(f, batch.Options{MaxDelay: time.Millisecond, Workers: 1})
	defer b.Close()
	// The first call occupies the only worker.
	first := make(chan error, 1)
	go func() {
		_, err := b.Predict(context.Background(), infer.Graph{NumNodes: 1, Features: make([]float32, 1)})
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
	_, err := b.Predict(ctx, infer.Graph{NumNodes: 1, Features: make([]float32, 1)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued call past its deadline: %v, want DeadlineExceeded", err)
	}
	close(f.release)
	if err := <-first; err != nil {
		t.Errorf("first call: %v", err)
	}
}

func TestClosedBatcherRefuses(t *testing.T) {
	b := batch.New(&fakeModel{}, batch.Options{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := b.Predict(context.Background(), infer.Graph{NumNodes: 1, Features: make([]float32, 1)})
	if !errors.Is(err, batch.ErrClosed) {
		t.Errorf("Predict after Close: %v, want ErrClosed", err)
	}
}

// TestLoneRequestDoesNotWait: with nobody else in the batcher, a request
// runs at once rather than waiting out MaxDelay for company.
func TestLoneRequestDoesNotWait(t *testing.T) {
	f := &fakeModel{}
	b := batch.New(f, batch.Options{MaxDelay: time.Second, Workers: 1})
	defer b.Close()
	start := time.Now()
	if _, err := b.Predict(context.Background(), infer.Graph{NumNodes: 1, Features: make([]float32, 1)}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a lone request took %v with MaxDelay 1s, want no batching wait", d)
	}
}
