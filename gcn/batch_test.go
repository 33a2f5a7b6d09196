package gcn_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infertest"
)

// TestBatchedEqualsUnbatched: every graph's batched result equals its
// unbatched result within 1e-6, and batches really formed.
func TestBatchedEqualsUnbatched(t *testing.T) {
	// ONNX Runtime runs both: a native karate run takes microseconds, so
	// callers rarely overlap enough to merge, and this test is about what
	// merging computes.
	m := infertest.OpenKarate(t, gcn.WithNativeExecution(false))
	b := infertest.OpenKarate(t, gcn.WithNativeExecution(false),
		gcn.WithBatching(gcn.BatchOptions{MaxDelay: 5 * time.Millisecond, Workers: 1}))
	if !b.Info().Batching {
		t.Fatal("Info().Batching = false with WithBatching on a batchable model")
	}

	const graphs = 96
	inputs := make([]gcn.Tensors, graphs)
	want := make([]gcn.Prediction, graphs)
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

	got := make([]gcn.Prediction, graphs)
	errs := make([]error, graphs)
	// All callers start together.
	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	ready.Add(graphs)
	for i := range graphs {
		wg.Go(func() {
			ready.Done()
			<-start
			got[i], errs[i] = b.Predict(context.Background(), inputs[i])
		})
	}
	ready.Wait()
	close(start)
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
