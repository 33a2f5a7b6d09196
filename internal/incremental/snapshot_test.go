package incremental

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestIncrementalSnapshot proves that a score running concurrently with
// Apply, with no lock at all, sees one whole batch or none of it, and
// every batch acknowledged before it started. The writer alternates two
// batches, A and its exact inverse B, so the graph is either G0 or G1 and
// every read must equal the reference of one of them; a half-applied
// batch (some rows of A, not all) gives other numbers. A is large enough to
// take the parallel path, takes a hub across the lazy degree and back (rows
// copied, pending deltas, links relinked), and changes features. Readers
// note done (Applies returned) before and started (Applies begun) after
// each read: the snapshot's version lies between, so when they are equal
// the read must equal exactly that version (read-your-writes). Readers
// never touch the topology, which the writer changes unlocked, so -race
// also proves scores do not read it.
func TestIncrementalSnapshot(t *testing.T) {
	for _, layers := range []int{2, 3} {
		t.Run(fmt.Sprintf("layers=%d", layers), func(t *testing.T) {
			runSnapshot(t, layers)
		})
	}
}

func runSnapshot(t *testing.T, layers int) {
	rng := rand.New(rand.NewPCG(77, uint64(layers)))
	widths := []int{6, 8, 5, 3}[:layers]
	widths = append(widths, 3)
	net := randomNetwork(rng, gcn.AggregationGCN, widths, gcn.InputNormNone)
	g := newTestGraph(rng, 6, 60, 150)
	s, err := NewConcurrent(net, g)
	if err != nil {
		t.Fatal(err)
	}
	hub := int32(1)
	lazy := len(g.adj[hub]) + 3
	s.SetLazyDegree(lazy)
	s.workers, s.parallelMin, s.cacheMin = 2, 0, 1
	s.split.on = false

	// Batch A: the hub gains 8 links (past the lazy degree: it starts
	// pending), other links appear, features change. B undoes A.
	type edge struct{ u, v int32 }
	var added []edge
	for i := range 8 {
		added = append(added, edge{hub, int32(10 + i)})
	}
	for range 10 {
		added = append(added, edge{g.randomLive(rng), g.randomLive(rng)})
	}
	featNodes := []int32{2, 20, 30}
	oldFeat := map[int32][]float32{}
	newFeat := map[int32][]float32{}
	for _, v := range featNodes {
		oldFeat[v] = g.feat[v]
		newFeat[v] = g.randomFeatures(rng)
	}
	applyA := func() []Change {
		var ch []Change
		for _, e := range added {
			ch = append(ch, g.addEdge(e.u, e.v))
		}
		for _, v := range featNodes {
			g.feat[v] = newFeat[v]
			ch = append(ch, Change{Kind: FeaturesChanged, U: v})
		}
		return ch
	}
	applyB := func() []Change {
		var ch []Change
		for _, e := range added {
			for i := len(g.listed) - 1; i >= 0; i-- {
				if g.listed[i] == [2]int32{e.u, e.v} {
					ch = append(ch, g.removeListed(i))
					break
				}
			}
		}
		for _, v := range featNodes {
			g.feat[v] = oldFeat[v]
			ch = append(ch, Change{Kind: FeaturesChanged, U: v})
		}
		return ch
	}
	ref := [2][][]float64{reference(net, g)}
	chA := applyA()
	ref[1] = reference(net, g)
	applyB()
	if len(chA) < 20 {
		t.Fatalf("batch A has %d changes", len(chA))
	}

	// Watched: the nodes A changes most, where a half-applied batch shows.
	C := 3
	var watched []int32
	for _, v := range g.liveNodes() {
		d := 0.0
		for j := range C {
			d = max(d, math.Abs(ref[0][v][j]-ref[1][v][j]))
		}
		if d > 1e-3 {
			watched = append(watched, v)
		}
	}
	if len(watched) < 10 {
		t.Fatalf("only %d nodes differ between G0 and G1", len(watched))
	}
	matches := func(got []float32, version int64) bool {
		want := ref[version%2]
		for i, v := range watched {
			for j := range C {
				if math.Abs(float64(got[i*C+j])-want[v][j]) > 1e-5 {
					return false
				}
			}
		}
		return true
	}

	var started, done, pinned atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var readErr error
	var reads, overlapped, exact [4]int
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make([]float32, len(watched)*C)
			for !stop.Load() {
				pre := done.Load()
				if err := s.Probabilities(watched, got); err != nil {
					mu.Lock()
					readErr = errors.Join(readErr, err)
					mu.Unlock()
					return
				}
				post := started.Load()
				ok := false
				for v := pre; v <= post && !ok; v++ {
					ok = matches(got, v)
				}
				if !ok {
					mu.Lock()
					readErr = errors.Join(readErr, fmt.Errorf("read between versions %d and %d matches neither: a half-applied batch or a missed one", pre, post))
					mu.Unlock()
					return
				}
				reads[r]++
				if post > pre {
					overlapped[r]++
				} else {
					exact[r]++
					pinned.Add(1)
				}
			}
		}()
	}
	got := make([]float32, len(watched)*C)
	const batches = 400
	for k := int64(1); k <= batches; k++ {
		started.Store(k)
		ch := applyB
		if k%2 == 1 {
			ch = applyA
		}
		if err := s.Apply(ch()); err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		done.Store(k)
		if err := s.Probabilities(watched, got); err != nil || !matches(got, k) {
			t.Fatalf("read-your-writes after batch %d: err %v, matches %v", k, err, err == nil && matches(got, k))
		}
		if k%50 == 0 {
			// Let the readers pin a version now and then: most reads
			// overlap an Apply otherwise.
			want := pinned.Load() + 1
			for i := 0; pinned.Load() < want; i++ {
				if i == 10000 {
					t.Fatalf("no read pinned to version %d in 10 s", k)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if k == 1 && s.views[s.active.Load()].last.pend[hub] < 0 {
			t.Fatalf("the hub (lazy degree %d, degree %d) is not pending after A: the test does not cover pending rows", lazy, s.deg[hub])
		}
	}
	stop.Store(true)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	var sr, so, se int
	for r := range 4 {
		sr, so, se = sr+reads[r], so+overlapped[r], se+exact[r]
	}
	t.Logf("%d batches, %d lock-free reads of %d nodes: %d overlapped an Apply, %d pinned to one version", batches, sr, len(watched), so, se)
	if so == 0 || se == 0 {
		t.Errorf("reads overlapping an Apply: %d, pinned to one version: %d; want both > 0", so, se)
	}
}
