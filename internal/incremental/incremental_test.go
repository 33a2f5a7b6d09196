package incremental

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

var aggregations = []gcn.Aggregation{gcn.AggregationGCN, gcn.AggregationMean, gcn.AggregationSum}

// TestIncrementalExact applies random batches of every change kind (edges
// added and removed, duplicates and self loops included, nodes added into
// fresh and reused slots, nodes removed, features changed) and compares
// random nodes after every batch, and every node at the end, with the
// from-scratch reference, for every aggregation, 1 to 3 layers, hubs kept
// pending (lazy degree 3) or not (0) or at the default, serial and
// parallel.
func TestIncrementalExact(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		for _, agg := range aggregations {
			for layers := 1; layers <= 3; layers++ {
				for _, lazy := range []int{0, 3, DefaultLazyDegree} {
					for _, parallel := range []bool{false, true} {
						name := fmt.Sprintf("concurrent=%v/%s/layers=%d/lazy=%d/parallel=%v", concurrent, agg, layers, lazy, parallel)
						t.Run(name, func(t *testing.T) {
							seed := uint64(len(name)*7919 + layers*31 + lazy)
							if parallel {
								seed++
							}
							runExact(t, rand.New(rand.NewPCG(seed, uint64(layers))), agg, layers, lazy, parallel, concurrent)
						})
					}
				}
			}
		}
	}
}

func runExact(t *testing.T, rng *rand.Rand, agg gcn.Aggregation, layers, lazy int, parallel, concurrent bool) {
	widths := []int{6, 5, 4, 3}[:layers]
	widths = append(widths, 3)
	norm := gcn.InputNormRow
	if rng.IntN(2) == 0 {
		norm = gcn.InputNormNone
	}
	net := randomNetwork(rng, agg, widths, norm)
	g := newTestGraph(rng, widths[0], 50, 120)
	newState := New
	if concurrent {
		newState = NewConcurrent
	}
	s, err := newState(net, g)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLazyDegree(lazy)
	if parallel {
		// And every output with a pending neighbour cached.
		s.workers, s.parallelMin, s.cacheMin = 2, 0, 1
		s.split.on = false
		// And the links of every slot with 3 or more neighbours indexed.
		s.setLinkIndexMin(3)
	}
	checkNodes(t, s, g.liveNodes(), reference(net, g), 1e-5, "after New")
	mix := mixWeights{35, 25, 10, 10, 20}
	for batch := range 60 {
		changes := g.randomBatch(rng, 1+rng.IntN(25), mix)
		if err := s.Apply(changes); err != nil {
			t.Fatalf("batch %d: Apply: %v", batch, err)
		}
		want := reference(net, g)
		var sample []int32
		for range 6 {
			sample = append(sample, g.randomLive(rng))
		}
		// The nodes the batch touched are the likeliest to be wrong.
		for _, c := range changes {
			if g.live[c.U] {
				sample = append(sample, c.U)
			}
		}
		checkNodes(t, s, sample, want, 1e-5, fmt.Sprintf("batch %d", batch))
		checkLinks(t, s, g, fmt.Sprintf("batch %d", batch))
	}
	checkNodes(t, s, g.liveNodes(), reference(net, g), 1e-5, "at the end")
	if parallel && lazy == 3 && layers > 1 && s.broughtForward.Load() == 0 {
		t.Errorf("every output cached (cacheMin 1), lazy degree 3: no cached pending sum was brought forward; the test does not exercise it")
	}
	if parallel && !concurrent && !slices.ContainsFunc(s.views[0].linkPos, func(m map[int32]int32) bool { return len(m) > 0 }) {
		t.Errorf("index from 3 links: no slot's links indexed at the end; the test does not exercise the index")
	}
	if lazy == 3 && layers > 1 && s.layers[len(s.layers)-1].pendLive == 0 && agg == gcn.AggregationGCN {
		t.Errorf("lazy degree 3: no node pending at the end; the test does not exercise hubs")
	}
}

// TestIncrementalHubTransitions drives one node's degree up past the lazy
// degree and back down to zero and out, checking its neighbours every
// step: hubs going pending, staying pending and being flushed.
func TestIncrementalHubTransitions(t *testing.T) {
	for _, agg := range aggregations {
		t.Run(string(agg), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			net := randomNetwork(rng, agg, []int{4, 4, 3}, gcn.InputNormNone)
			g := newTestGraph(rng, 4, 30, 40)
			s, err := New(net, g)
			if err != nil {
				t.Fatal(err)
			}
			s.SetLazyDegree(4)
			hub := int32(0)
			step := func(what string, changes []Change) {
				t.Helper()
				if err := s.Apply(changes); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				checkNodes(t, s, g.liveNodes(), reference(net, g), 1e-5, what)
			}
			for i := range 12 {
				step(fmt.Sprintf("link %d", i), []Change{g.addEdge(hub, int32(1+i))})
			}
			g.feat[hub] = g.randomFeatures(rng)
			step("hub features", []Change{{Kind: FeaturesChanged, U: hub}})
			for i := 0; len(g.adj[hub]) > 0; i++ {
				for j, e := range g.listed {
					if e[0] == hub || e[1] == hub {
						step(fmt.Sprintf("unlink %d", i), []Change{g.removeListed(j)})
						break
					}
				}
			}
			step("remove hub", g.removeNode(hub, nil))
			v, c := g.addNode(rng)
			changes := []Change{c}
			for i := range 8 {
				changes = append(changes, g.addEdge(v, int32(10+i)))
			}
			step("new hub in one batch", changes)
		})
	}
}

func TestIncrementalErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	net := randomNetwork(rng, gcn.AggregationGCN, []int{4, 3, 2}, gcn.InputNormRow)
	g := newTestGraph(rng, 4, 10, 10)
	s, err := New(net, g)
	if err != nil {
		t.Fatal(err)
	}
	before := reference(net, g)
	for _, tc := range []struct {
		changes []Change
		want    string
	}{
		{[]Change{{Kind: EdgeAdded, U: 0, V: 99}}, "endpoint 99 outside the 10 slots"},
		{[]Change{{Kind: FeaturesChanged, U: -1}}, "node -1 outside"},
		{[]Change{{Kind: 0, U: 1}}, "unknown kind ChangeKind(0)"},
	} {
		if err := s.Apply(tc.changes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply(%v): got %v, want an error containing %q", tc.changes, err, tc.want)
		}
	}
	g.feat[3] = []float32{1, 2}
	if err := s.Apply([]Change{{Kind: FeaturesChanged, U: 3}}); err == nil || !strings.Contains(err.Error(), "node slot 3: 2 features, model wants 4") {
		t.Errorf("short feature row: got %v", err)
	}
	g.feat[3] = make([]float32, 4)
	copy(g.feat[3], []float32{0, 0, 0, 0})
	// The failed Applies left the state alone: node 3's old features are
	// still in it until an Apply says they changed.
	checkNodes(t, s, []int32{0, 1, 2}, before, 1e-5, "after refused batches")

	if err := s.Probabilities([]int32{0}, make([]float32, 1)); err == nil || !strings.Contains(err.Error(), "dst has 1 values, want 1 nodes x 2 classes") {
		t.Errorf("short dst: got %v", err)
	}
	// A score reads the published state: the node is live until the
	// Apply that removes it.
	gone := g.removeNode(4, nil)
	if err := s.Probabilities([]int32{4}, make([]float32, 2)); err != nil {
		t.Errorf("node removed from the topology but not applied yet: got %v", err)
	}
	if err := s.Apply(gone); err != nil {
		t.Fatal(err)
	}
	if err := s.Probabilities([]int32{4}, make([]float32, 2)); !errors.Is(err, ErrNotLive) {
		t.Errorf("dead slot: got %v, want ErrNotLive", err)
	}
	if err := s.Probabilities([]int32{1000}, make([]float32, 2)); !errors.Is(err, ErrNotLive) || !strings.Contains(err.Error(), "slot 1000") {
		t.Errorf("slot out of range: got %v, want ErrNotLive naming slot 1000", err)
	}

	bad := *net
	bad.Layers = append([]gcn.Layer(nil), net.Layers...)
	bad.Layers[1].Aggregation = "max"
	if _, err := New(&bad, g); err == nil || !strings.Contains(err.Error(), `aggregation "max"`) {
		t.Errorf("New with aggregation max: got %v", err)
	}
	bad.Layers[1].Aggregation = gcn.AggregationGCN
	bad.Layers[1].In = 7
	if _, err := New(&bad, g); err == nil || !strings.Contains(err.Error(), "layer 1") {
		t.Errorf("New with broken chain: got %v", err)
	}
}

// TestIncrementalConcurrent runs one writer (topology change + Apply under
// the write lock) against readers (Probabilities under the read lock) the
// way a stored graph's owner does. Every read compares with the reference
// computed under the same read lock, so a half-applied batch would show;
// the writer reads its own writes right after unlocking. Run under -race.
func TestIncrementalConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	net := randomNetwork(rng, gcn.AggregationGCN, []int{6, 8, 3}, gcn.InputNormRow)
	g := newTestGraph(rng, 6, 80, 300)
	s, err := New(net, g)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLazyDegree(6)
	s.workers, s.parallelMin = 2, 0 // Apply's parallel path under -race too
	s.split.on = false
	s.cacheMin = 1 // readers share cached outputs
	var mu sync.RWMutex
	const batches = 150
	done := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	var readMu sync.Mutex
	reads := make([]int, 3)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(uint64(r), 99))
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.RLock()
				nodes := []int32{g.randomLive(rr), g.randomLive(rr), g.randomLive(rr)}
				want := reference(net, g)
				got := make([]float32, len(nodes)*3)
				err := s.Probabilities(nodes, got)
				mu.RUnlock()
				if err == nil {
					for i, v := range nodes {
						for j := range 3 {
							if d := float64(got[i*3+j]) - want[v][j]; d > 1e-5 || d < -1e-5 {
								err = fmt.Errorf("read %d: node %d class %d: got %v, want %v", reads[r], v, j, got[i*3+j], want[v][j])
							}
						}
					}
				}
				if err != nil {
					readMu.Lock()
					readErr = errors.Join(readErr, err)
					readMu.Unlock()
					return
				}
				reads[r]++
			}
		}()
	}
	for batch := range batches {
		mu.Lock()
		changes := g.randomBatch(rng, 1+rng.IntN(30), mixWeights{40, 30, 5, 5, 20})
		err := s.Apply(changes)
		mu.Unlock()
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		mu.RLock()
		var touched []int32
		for _, c := range changes {
			if g.live[c.U] {
				touched = append(touched, c.U)
			}
		}
		checkNodes(t, s, touched, reference(net, g), 1e-5, fmt.Sprintf("read-your-writes after batch %d", batch))
		mu.RUnlock()
	}
	close(done)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	for r, n := range reads {
		if n == 0 {
			t.Errorf("reader %d read nothing while %d batches were applied", r, batches)
		}
	}
}

func TestBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	net := randomNetwork(rng, gcn.AggregationGCN, []int{16, 64, 64, 40}, gcn.InputNormRow)
	g := newTestGraph(rng, 16, 1000, 2000)
	links := 0 // distinct neighbours, summed over the slots
	for _, a := range g.adj {
		distinct := map[int32]bool{}
		for _, u := range a {
			distinct[u] = true
		}
		links += len(distinct)
	}
	weights := int64(16*64+64*64+64*40) * 8
	// docs/INCREMENTAL.md, "Memory": New: per slot 16 + 48 + sum over the
	// stored layers of (12*w + 8), 12 bytes per distinct neighbour.
	// NewConcurrent: per slot 16 + sum over the stored layers but the last
	// of (12*w + 8) + 2 x (4*w_last + 56) + 4, 24 bytes per distinct
	// neighbour, and two sum rows of 8*w_last bytes per slot, allocated
	// 4096 rows at a time. Plus the weights (no score ran: no cached
	// output rows).
	for _, concurrent := range []bool{false, true} {
		newState := New
		// Both: a link-index pointer per slot and view (8), a byte
		// counter per slot and stored layer (per view for the last).
		perNode := int64(16 + 32 + 8 + 8 + 2*(12*64+8) + 8 + 2)
		arena, V := int64(0), int64(1)
		if concurrent {
			newState, V = NewConcurrent, 2
			perNode = 16 + (12*64 + 8) + 2*(4*64+40+8+8) + 4 + 2*8 + 3
			arena = (2*1000 + chunkRows - 1) / chunkRows * chunkRows * 8 * 64
		}
		s, err := newState(net, g)
		if err != nil {
			t.Fatal(err)
		}
		if got, lo := s.Bytes(), 1000*perNode+arena+int64(links)*12*V+weights; got < lo || got > lo+lo/4 {
			t.Errorf("concurrent=%v: Bytes() = %d, want %d (formula) to 25%% more (slice capacity)", concurrent, got, lo)
		}
	}
}
