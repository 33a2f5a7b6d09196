package gcn_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/infertest"
)

// TestScratchLifetime: concurrent native passes, some cancelled before
// and some while they run, on a model whose forward scratch is mapped
// outside the heap. Every pass that succeeds gives the probabilities of a
// model that keeps no scratch, bit for bit (a buffer reused while another
// pass still read it would show here), no pass reads a buffer after the
// pool unmapped it (with a bound of one byte, every buffer given back is
// unmapped at once: a late read would fault), and once all have returned
// nothing is still handed out. Run it with -race.
func TestScratchLifetime(t *testing.T) {
	plain := infertest.OpenKarate(t, gcn.WithScratchBytes(0))
	if !plain.Info().Native {
		t.Fatalf("karate is not run natively (%s): the test needs the native pass", plain.Info().NativeReason)
	}
	f := plain.Info().FeatureDim
	// Two graphs, so that a buffer handed to the wrong pass shows as wrong
	// probabilities; large enough that the buffers are mapped and the pass
	// runs on two goroutines.
	graphs := []gcn.Tensors{infertest.RandomGraph(1, 20_000, 80_000, f), infertest.RandomGraph(2, 15_000, 70_000, f)}
	want := make([]gcn.Prediction, len(graphs))
	for i, g := range graphs {
		p, err := plain.Predict(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p
	}
	for _, tc := range []struct {
		name  string
		bytes int64
	}{{"unmapped at once", 1}, {"kept", gcn.DefaultScratchBytes}} {
		t.Run(tc.name, func(t *testing.T) {
			m := infertest.OpenKarate(t, gcn.WithScratchBytes(tc.bytes), gcn.WithMaxConcurrentRuns(4), gcn.WithNativeWorkers(2))
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, cancelled := 0, 0
			for i := range 24 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					switch i % 3 {
					case 1:
						cancel() // before the pass
					case 2:
						go cancel() // at some point of it
					}
					g := i % len(graphs)
					p, err := m.Predict(ctx, graphs[g])
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
						if !equalBits(p.Probabilities, want[g].Probabilities) {
							t.Errorf("pass %d: probabilities differ from a model without scratch", i)
						}
					case errors.Is(err, context.Canceled):
						cancelled++
					default:
						t.Errorf("pass %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			if ok < 8 || cancelled < 8 {
				t.Errorf("%d passes succeeded and %d were cancelled, want at least 8 of each", ok, cancelled)
			}
			if got := gcn.ScratchInUse(m); got != 0 {
				t.Errorf("after every pass: %d bytes of scratch handed out, want 0 (all given back)", got)
			}
			if gcn.ScratchMaps(m) == 0 {
				t.Error("the scratch pool mapped nothing: the test did not exercise mapped memory")
			}
		})
	}
}
