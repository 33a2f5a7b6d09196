package gcn

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// largeEdges is a random edge list of the large benchmark's shape.
func largeEdges(n, e int) []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	idx := make([]int64, 2*e)
	for i := range idx {
		idx[i] = int64(r.IntN(n))
	}
	return idx
}

// BenchmarkAggregate is the aggregation alone (one GCN layer's sum over the
// closed neighbourhoods, 16 and 7 wide (hidden and Cora's classes), on 100k nodes and 500k edges: 1M
// entries), on one goroutine and split over two; ns/entry is per
// (target, source) entry of the Adjacency.
func BenchmarkAggregate(b *testing.B) {
	const n, e = 100_000, 500_000
	adj, err := NewAdjacency(n, largeEdges(n, e))
	if err != nil {
		b.Fatal(err)
	}
	post := make([]float32, n)
	for v := range post {
		post[v] = 1 / float32(adj.Degree(v))
	}
	for _, c := range []struct{ width, workers int }{{16, 1}, {16, 2}, {7, 1}} {
		width := c.width
		h := make([]float32, n*stride(width))
		for i := range h {
			h[i] = float32(i%97) / 97
		}
		out := make([]float32, n*width)
		workers := c.workers
		b.Run("width="+strconv.Itoa(width)+"/workers="+strconv.Itoa(workers), func(b *testing.B) {
			rows := adj.splitTargets(workers)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				parallel(rows, func(lo, hi int) { aggregate(adj, h, width, post, nil, ActivationReLU, lo, hi, out) })
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(adj.NumEntries()), "ns/entry")
		})
	}
}

// BenchmarkNewAdjacency is the CSR build (counting sort) of the large
// graph, on one goroutine and split over two, in a reused scratch as a
// Model's pool gives it (workers=1/fresh: NewAdjacency, new memory).
func BenchmarkNewAdjacency(b *testing.B) {
	const n, e = 100_000, 500_000
	idx := largeEdges(n, e)
	for _, c := range []struct {
		name    string
		workers int
		sc      *scratch
	}{{"workers=1/fresh", 1, nil}, {"workers=1", 1, new(scratch)}, {"workers=2", 2, new(scratch)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := buildAdjacency(n, idx, c.workers, c.sc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(e), "ns/edge")
		})
	}
}

// TestNativePays: wide dense first-layer inputs go to ONNX Runtime (its
// vectorised MatMul wins), bag-of-words and aggregation-heavy graphs stay
// native.
func TestNativePays(t *testing.T) {
	net := &Network{FeatureDim: 1433, Layers: []Layer{{In: 1433, Out: 16}, {In: 16, Out: 7}}}
	const n, e = 2708, 5278
	g := Tensors{NumNodes: n, Features: make([]float32, n*1433), EdgeIndex: largeEdges(n, e)}
	for i := range g.Features {
		g.Features[i] = 1
	}
	if net.nativePays(g) {
		t.Error("dense 1433-wide features: nativePays = true, want false")
	}
	for i := range g.Features {
		if i%79 != 0 { // 1.3% nonzero, as Cora's bag of words
			g.Features[i] = 0
		}
	}
	if !net.nativePays(g) {
		t.Error("bag-of-words features: nativePays = false, want true")
	}
	large := &Network{FeatureDim: 16, Layers: []Layer{{In: 16, Out: 16}, {In: 16, Out: 7}}}
	lg := Tensors{NumNodes: 100_000, Features: make([]float32, 100_000*16), EdgeIndex: largeEdges(100_000, 500_000)}
	for i := range lg.Features {
		lg.Features[i] = 1
	}
	if !large.nativePays(lg) {
		t.Error("large graph, dense 16 features: nativePays = false, want true")
	}
}

// layerByLayer is the native forward pass without fusion: each layer's
// transform over all rows, then its aggregation over all rows, then the
// softmax; the reference TestForwardFusedMatchesLayerByLayer holds the
// fused pass to.
func layerByLayer(n *Network, x []float32, adj *Adjacency) (layers [][]float32, probs []float32) {
	num := adj.NumNodes
	dinv, invDeg, rowNorm := make([]float32, num), make([]float32, num), []float32(nil)
	for v := range num {
		dinv[v] = float32(1 / math.Sqrt(float64(adj.Degree(v))))
		invDeg[v] = float32(1 / float64(adj.Degree(v)))
	}
	if n.InputNorm == InputNormRow {
		rowNorm = make([]float32, num)
		rowSumInverse(x, n.FeatureDim, 0, num, rowNorm)
	}
	in := x
	for li := range n.Layers {
		l := &n.Layers[li]
		h := make([]float32, num*stride(l.Out))
		transform(in, l.In, padWeight(l), stride(l.Out), n.layerScale(li, dinv, rowNorm), 0, num, h)
		out := make([]float32, num*l.Out)
		aggregate(adj, h, l.Out, n.layerPost(li, dinv, invDeg), l.Bias, l.Activation, 0, num, out)
		layers = append(layers, out)
		in = out
	}
	c := n.NumClasses()
	probs = append([]float32(nil), in...)
	for v := range num {
		softmax(probs[v*c : (v+1)*c])
	}
	return layers, probs
}

// TestForwardFusedMatchesLayerByLayer: the fused pass (aggregation and the
// next transform row by row) gives every layer's output and the
// probabilities bit for bit as the layer-by-layer pass, for 16-wide and
// other hidden widths, every aggregation, with 1 and 2 goroutines.
func TestForwardFusedMatchesLayerByLayer(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	layer := func(in, out int, act Activation, agg Aggregation, bias bool) Layer {
		l := Layer{Aggregation: agg, In: in, Out: out, Weight: make([]float32, in*out), Activation: act}
		for i := range l.Weight {
			l.Weight[i] = float32(r.NormFloat64() * 0.5)
		}
		if bias {
			l.Bias = make([]float32, out)
			for i := range l.Bias {
				l.Bias[i] = float32(r.NormFloat64() * 0.1)
			}
		}
		return l
	}
	const f = 10
	nets := map[string]*Network{
		"gcn 16-7": {FeatureDim: f, InputNorm: InputNormRow, Layers: []Layer{
			layer(f, 16, ActivationReLU, AggregationGCN, true), layer(16, 7, ActivationNone, AggregationGCN, true)}},
		"mean 16-16-3": {FeatureDim: f, InputNorm: InputNormNone, Layers: []Layer{
			layer(f, 16, ActivationReLU, AggregationMean, false), layer(16, 16, ActivationReLU, AggregationSum, true),
			layer(16, 3, ActivationNone, AggregationMean, true)}},
		"sum 12-24-5": {FeatureDim: f, InputNorm: InputNormRow, Layers: []Layer{
			layer(f, 12, ActivationReLU, AggregationSum, true), layer(12, 24, ActivationReLU, AggregationGCN, false),
			layer(24, 5, ActivationNone, AggregationSum, true)}},
	}
	const num, e = 3000, 12000
	x := make([]float32, num*f)
	for i := range x {
		if r.IntN(3) == 0 {
			x[i] = r.Float32()
		}
	}
	adj, err := NewAdjacency(num, largeEdges(num, e))
	if err != nil {
		t.Fatal(err)
	}
	for name, net := range nets {
		if err := net.Check(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantLayers, wantProbs := layerByLayer(net, x, adj)
		for _, workers := range []int{1, 2} {
			got, err := net.ForwardAdjacency(context.Background(), x, adj, ForwardOptions{Workers: workers, KeepLayers: true})
			if err != nil {
				t.Fatal(err)
			}
			for li := range wantLayers {
				if !sameBits(got.Layers[li], wantLayers[li]) {
					t.Errorf("%s, workers=%d: layer %d differs from the layer-by-layer pass", name, workers, li)
				}
			}
			if !sameBits(got.Probabilities, wantProbs) {
				t.Errorf("%s, workers=%d: probabilities differ from the layer-by-layer pass", name, workers)
			}
			plain, err := net.ForwardAdjacency(context.Background(), x, adj, ForwardOptions{Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			if !sameBits(plain.Probabilities, wantProbs) {
				t.Errorf("%s, workers=%d: probabilities without KeepLayers differ", name, workers)
			}
		}
	}
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestBuildAdjacencyParts: the adjacency built in parts on several
// goroutines is the one-goroutine build's, entry for entry (rows in edge
// order), with self loops and duplicates in the edge list, also when the
// scratch it is built in held a larger graph before.
func TestBuildAdjacencyParts(t *testing.T) {
	const n, e = 5000, 4*edgesPerBuildWorker + 17
	idx := largeEdges(n, e)
	for j := 0; j < e; j += 97 { // self loops
		idx[e+j] = idx[j]
	}
	for j := 1; j < e; j += 89 { // duplicates, both ways
		idx[j], idx[e+j] = idx[e+j-1], idx[j-1]
	}
	want, err := NewAdjacency(n, idx)
	if err != nil {
		t.Fatal(err)
	}
	sc := new(scratch)
	big, err := buildAdjacency(3*n, largeEdges(3*n, 2*e), 4, sc)
	if err != nil {
		t.Fatal(err)
	}
	if big.NumEntries() == 0 {
		t.Fatal("the larger graph has no entries")
	}
	for _, workers := range []int{1, 2, 3, 4, 7} {
		got, err := buildAdjacency(n, idx, workers, sc)
		if err != nil {
			t.Fatal(err)
		}
		if got.NumNodes != n || !slices.Equal(got.Offsets, want.Offsets) || !slices.Equal(got.Sources, want.Sources) {
			t.Errorf("workers=%d: adjacency differs from the one-goroutine build", workers)
		}
	}
	// The one-goroutine build itself: row d lists, in edge order, the
	// other endpoint of every non-loop edge at d.
	rows := make([][]int32, n)
	for j := range e {
		s, d := idx[j], idx[e+j]
		if s != d {
			rows[d] = append(rows[d], int32(s))
			rows[s] = append(rows[s], int32(d))
		}
	}
	for d := range n {
		if got := want.Sources[want.Offsets[d]:want.Offsets[d+1]]; !slices.Equal(got, rows[d]) {
			t.Fatalf("row %d = %v, want %v", d, got, rows[d])
		}
	}
}

// TestForwardScratchReuse: a pass in scratch that earlier passes on other
// graphs (larger, smaller, other aggregations) used gives the same
// probabilities bit for bit as a pass in fresh memory.
func TestForwardScratchReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	layer := func(in, out int, act Activation, agg Aggregation) Layer {
		l := Layer{Aggregation: agg, In: in, Out: out, Weight: make([]float32, in*out), Bias: make([]float32, out), Activation: act}
		for i := range l.Weight {
			l.Weight[i] = float32(r.NormFloat64() * 0.5)
		}
		return l
	}
	const f = 8
	nets := []*Network{
		{FeatureDim: f, InputNorm: InputNormRow, Layers: []Layer{layer(f, 16, ActivationReLU, AggregationGCN), layer(16, 7, ActivationNone, AggregationGCN)}},
		{FeatureDim: f, InputNorm: InputNormNone, Layers: []Layer{layer(f, 24, ActivationReLU, AggregationMean), layer(24, 16, ActivationReLU, AggregationSum), layer(16, 3, ActivationNone, AggregationMean)}},
	}
	graph := func(n, e int) Tensors {
		x := make([]float32, n*f)
		for i := range x {
			x[i] = r.Float32()
		}
		return Tensors{NumNodes: n, Features: x, EdgeIndex: largeEdges(n, e)}
	}
	graphs := []Tensors{graph(40_000, 150_000), graph(300, 900), graph(20_000, 2*edgesPerBuildWorker)}
	sc := new(scratch)
	for round := range 2 {
		for gi, g := range graphs {
			for ni, net := range nets {
				want, err := net.ForwardLayers(context.Background(), g, ForwardOptions{Workers: 1})
				if err != nil {
					t.Fatal(err)
				}
				for _, workers := range []int{1, 2} {
					got, err := net.forwardTensors(context.Background(), g, ForwardOptions{Workers: workers}, sc)
					if err != nil {
						t.Fatal(err)
					}
					if !sameBits(got.Probabilities, want.Probabilities) {
						t.Errorf("round %d, graph %d, network %d, workers=%d: probabilities differ from a pass in fresh memory", round, gi, ni, workers)
					}
				}
			}
		}
	}
}

// TestScratchPoolBounds: buffers a pass gives back serve the next pass
// (same mapping), the pool never keeps more than its bound idle (a buffer
// over it is unmapped at once), keeps nothing after close, and a nil pool
// hands out heap scratch.
func TestScratchPoolBounds(t *testing.T) {
	const floats = 100_000 // 400 kB: a 512 KiB class, mapped
	p := newScratchPool(1<<20, time.Minute)
	t.Cleanup(p.close)
	sc := p.get()
	h := grow(sc, &sc.h, floats)
	first := &h[0]
	h[floats-1] = 7
	p.put(sc)
	if sc.h != nil {
		t.Error("put left the scratch holding its buffer")
	}
	if got := p.retained(); got != 512<<10 {
		t.Fatalf("retained %d bytes, want one 512 KiB class", got)
	}
	sc = p.get()
	if h := grow(sc, &sc.h, floats-1000); &h[0] != first {
		t.Error("the next pass's buffer of the same class is not the one given back")
	}
	if s := p.bufs.Stats(); s.Maps != 1 || s.InUse != 512<<10 || s.Idle != 0 {
		t.Errorf("after reuse: %+v, want one mapping, 512 KiB in use, none idle", s)
	}
	other := p.get()
	grow(other, &other.spare, floats) // a second mapping of the class
	grow(other, &other.dinv, 2*floats)
	p.put(sc)
	p.put(other) // 512 KiB + 512 KiB + 1 MiB: only what fits stays
	if got := p.retained(); got > 1<<20 {
		t.Errorf("retained %d bytes, over the bound of %d", got, 1<<20)
	}
	if s := p.bufs.Stats(); s.InUse != 0 || s.Unmaps == 0 {
		t.Errorf("after the puts: %+v, want none in use and the buffers over the bound unmapped", s)
	}
	p.close()
	if got := p.retained(); got != 0 {
		t.Errorf("after close: retained %d bytes, want 0", got)
	}
	late := p.get()
	grow(late, &late.h, floats)
	p.put(late)
	if got := p.retained(); got != 0 {
		t.Errorf("a put after close: retained %d bytes, want 0", got)
	}

	// Buffers under scratchMinBytes stay on the heap, kept with their
	// scratch for the next pass.
	small := newScratchPool(1<<20, time.Minute)
	t.Cleanup(small.close)
	sc = small.get()
	hs := grow(sc, &sc.h, 100)
	small.put(sc)
	if got := small.retained(); got != 400 {
		t.Errorf("a scratch of 100 heap floats: retained %d bytes, want 400", got)
	}
	if again := small.get(); again != sc || &again.h[0] != &hs[0] {
		t.Error("the next pass did not get the kept scratch with its heap buffer")
	}
	if s := small.bufs.Stats(); s.Maps != 0 {
		t.Errorf("a 400-byte buffer was mapped (%+v), want it on the heap", s)
	}

	var none *scratchPool
	sc = none.get()
	if sc == nil || sc.pool != nil {
		t.Fatal("a nil pool must hand out heap scratch")
	}
	grow(sc, &sc.h, floats)
	none.put(sc)
	if none.retained() != 0 {
		t.Error("a nil pool kept memory")
	}
	if newScratchPool(0, time.Minute) != nil {
		t.Error("newScratchPool(0) != nil, want no pool (WithScratchBytes(0) keeps nothing)")
	}
}

// TestScratchPoolIdle: the pool unmaps its buffers once idle.
func TestScratchPoolIdle(t *testing.T) {
	p := newScratchPool(1<<20, time.Millisecond)
	defer p.close()
	sc := p.get()
	grow(sc, &sc.h, 100_000)
	p.put(sc)
	deadline := time.Now().Add(30 * time.Second)
	for p.retained() != 0 || p.bufs.Stats().Unmaps != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("still %d bytes retained (%+v) 30 s after the idle timer should have fired", p.retained(), p.bufs.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// randomLayer is a layer of random weights and biases.
func randomLayer(in, out int, act Activation, agg Aggregation) Layer {
	r := rand.New(rand.NewPCG(uint64(in), uint64(out)))
	l := Layer{Aggregation: agg, In: in, Out: out, Weight: make([]float32, in*out), Bias: make([]float32, out), Activation: act}
	for i := range l.Weight {
		l.Weight[i] = float32(r.NormFloat64() * 0.5)
	}
	for i := range l.Bias {
		l.Bias[i] = float32(r.NormFloat64() * 0.1)
	}
	return l
}

// randomTensors is a graph of n nodes, e random edges and f features in
// [0, 1) per node.
func randomTensors(n, e, f int) Tensors {
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, n*f)
	for i := range x {
		x[i] = r.Float32()
	}
	return Tensors{NumNodes: n, Features: x, EdgeIndex: largeEdges(n, e)}
}

// countdownCtx is a context whose Err turns to Canceled on its n-th call:
// a pass cancelled at a chosen phase, deterministically.
type countdownCtx struct {
	context.Context
	mu sync.Mutex
	n  int
}

func (c *countdownCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.n <= 0 {
		return context.Canceled
	}
	return nil
}

// TestForwardCancelledReturnsScratch: a pass cancelled at each of its
// phases returns the context's error with every buffer it took still in
// its scratch (none lost, so all go back to the pool: nothing stays in
// use), and a pass run afterwards in the pool's reused, unmapped-and-
// remapped buffers gives the fresh pass's probabilities bit for bit.
func TestForwardCancelledReturnsScratch(t *testing.T) {
	net := &Network{FeatureDim: 8, InputNorm: InputNormRow, Layers: []Layer{
		randomLayer(8, 16, ActivationReLU, AggregationGCN), randomLayer(16, 16, ActivationReLU, AggregationMean),
		randomLayer(16, 7, ActivationNone, AggregationGCN)}}
	g := randomTensors(30_000, 3*edgesPerBuildWorker, 8)
	want, err := net.ForwardLayers(context.Background(), g, ForwardOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, bound := range []int64{1, 64 << 20} { // unmap every buffer at once; keep them
		p := newScratchPool(bound, time.Minute)
		for calls := 1; calls <= 4; calls++ { // Err's calls: before the build, then before each layer
			sc := p.get()
			ctx := &countdownCtx{Context: context.Background(), n: calls}
			if _, err := net.forwardTensors(ctx, g, ForwardOptions{Workers: 2}, sc); err != context.Canceled {
				t.Fatalf("bound %d, cancelled at Err call %d: err %v, want context.Canceled", bound, calls, err)
			}
			p.put(sc)
			if s := p.bufs.Stats(); s.InUse != 0 {
				t.Errorf("bound %d, cancelled at Err call %d: %d bytes still in use after put, want 0 (a buffer left the scratch)", bound, calls, s.InUse)
			}
			for _, workers := range []int{1, 2} {
				sc := p.get()
				got, err := net.forwardTensors(context.Background(), g, ForwardOptions{Workers: workers}, sc)
				p.put(sc)
				if err != nil {
					t.Fatal(err)
				}
				if !sameBits(got.Probabilities, want.Probabilities) {
					t.Errorf("bound %d, after a pass cancelled at Err call %d, workers=%d: probabilities differ from a fresh pass", bound, calls, workers)
				}
			}
		}
		if s := p.bufs.Stats(); s.Maps == 0 || s.InUse != 0 {
			t.Errorf("bound %d: %+v, want mapped buffers, none in use", bound, s)
		}
		p.close()
	}
}

// BenchmarkForwardScratch is the native pass on the large graph's shape
// (100k nodes, 500k edges, 16 features, GCN 16-16-7) in scratch kept on the
// heap (one scratch reused, as before the scratch was mapped) and in
// scratch from the mapped pool (get and put per pass, as Model does).
func BenchmarkForwardScratch(b *testing.B) {
	net := &Network{FeatureDim: 16, InputNorm: InputNormRow, Layers: []Layer{
		randomLayer(16, 16, ActivationReLU, AggregationGCN), randomLayer(16, 7, ActivationNone, AggregationGCN)}}
	g := randomTensors(100_000, 500_000, 16)
	for _, workers := range []int{1, 2} {
		b.Run("heap/workers="+strconv.Itoa(workers), func(b *testing.B) {
			sc := new(scratch)
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := net.forwardTensors(context.Background(), g, ForwardOptions{Workers: workers}, sc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("mapped/workers="+strconv.Itoa(workers), func(b *testing.B) {
			p := newScratchPool(DefaultScratchBytes, scratchIdle)
			defer p.close()
			defer reportCPU(b)()
			for b.Loop() {
				sc := p.get()
				_, err := net.forwardTensors(context.Background(), g, ForwardOptions{Workers: workers}, sc)
				p.put(sc)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
