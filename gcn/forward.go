package gcn

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Native execution of a Network: plain Go loops over an Adjacency, float32
// storage, each output row computed by one goroutine in one fixed order, so
// the result does not depend on how many goroutines share the work.

// workPerGoroutine is the multiply-adds below which a phase is not worth
// another goroutine (measured: starting and joining one costs a few µs, a
// multiply-add about 1 ns; karate and Cora-sized graphs stay on one).
const workPerGoroutine = 1 << 20

// ForwardOptions tune one native forward pass.
type ForwardOptions struct {
	// Workers bounds the goroutines per phase. 0 (the default) chooses by
	// graph size: one for small graphs, up to GOMAXPROCS for large ones.
	// The result is the same bit for bit whatever the value.
	Workers int
	// KeepLayers keeps every layer's output in Outputs.Layers (memory: N x
	// the sum of the layer widths, float32).
	KeepLayers bool
}

// Outputs is what a forward pass computed.
type Outputs struct {
	// Layers[i] is layer i's output after its activation, row-major [N,
	// Layers[i].Out]; nil unless ForwardOptions.KeepLayers. The last one is
	// the logits the output head turns into Probabilities.
	Layers [][]float32
	// Probabilities is [N, C] row-major, each row summing to 1.
	Probabilities []float32
}

// Forward runs the network on t natively and returns the probabilities
// [N, C] row-major. t must be valid (as Model.Predict checks it: shapes,
// indexes in range, finite features). It returns ctx's error when ctx ends
// between phases.
func (n *Network) Forward(ctx context.Context, t Tensors) ([]float32, error) {
	out, err := n.ForwardLayers(ctx, t, ForwardOptions{})
	return out.Probabilities, err
}

// ForwardLayers is Forward with options: per-layer outputs and the
// goroutine count.
func (n *Network) ForwardLayers(ctx context.Context, t Tensors, opts ForwardOptions) (Outputs, error) {
	return n.forwardTensors(ctx, t, opts, nil)
}

// forwardTensors is ForwardLayers working in sc (nil: fresh memory); the
// Outputs never share sc's memory.
func (n *Network) forwardTensors(ctx context.Context, t Tensors, opts ForwardOptions, sc *scratch) (Outputs, error) {
	if err := ctx.Err(); err != nil {
		return Outputs{}, err
	}
	if len(t.Features) != t.NumNodes*n.FeatureDim {
		return Outputs{}, fmt.Errorf("x: %d values for %d nodes of %d features", len(t.Features), t.NumNodes, n.FeatureDim)
	}
	if sc == nil {
		sc = new(scratch)
	}
	// The same rule as the passes below, on the entries the edges will
	// make (at most two each).
	workers := opts.Workers
	if workers <= 0 {
		workers = n.autoWorkers(2*t.NumEdges() + t.NumNodes)
	}
	adj, err := buildAdjacency(t.NumNodes, t.EdgeIndex, workers, sc)
	if err != nil {
		return Outputs{}, err
	}
	return n.forward(ctx, t.Features, adj, opts, sc)
}

// autoWorkers is ForwardOptions.Workers' default for a graph of the given
// entries plus nodes: the widest layer's multiply-adds per goroutine at
// least workPerGoroutine, at most GOMAXPROCS goroutines.
func (n *Network) autoWorkers(entries int) int {
	widest := 0
	for _, l := range n.Layers {
		widest = max(widest, l.Out)
	}
	return min(runtime.GOMAXPROCS(0), max(1, entries*widest/workPerGoroutine))
}

// ForwardAdjacency runs the network on features x ([N, FeatureDim]
// row-major) over a prebuilt Adjacency: for callers that keep a graph's
// adjacency between requests. An adj whose offsets or sources are out of
// range is an error (checked first: the inner loops index rows by them
// without bounds checks).
func (n *Network) ForwardAdjacency(ctx context.Context, x []float32, adj *Adjacency, opts ForwardOptions) (Outputs, error) {
	if err := adj.check(); err != nil {
		return Outputs{}, err
	}
	return n.forward(ctx, x, adj, opts, new(scratch))
}

// forward is ForwardAdjacency working in sc.
func (n *Network) forward(ctx context.Context, x []float32, adj *Adjacency, opts ForwardOptions, sc *scratch) (Outputs, error) {
	num := adj.NumNodes
	if len(x) != num*n.FeatureDim {
		return Outputs{}, fmt.Errorf("x: %d values for %d nodes of %d features", len(x), num, n.FeatureDim)
	}
	var out Outputs
	if num == 0 {
		return out, nil
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = n.autoWorkers(len(adj.Sources) + num)
	}
	rows := adj.splitTargets(workers)

	// Per-node scales: what each Aggregation multiplies a source row by
	// before the sum (pre) and a target row by after it (post).
	var dinv, invDeg, rowNorm []float32
	for _, l := range n.Layers {
		switch l.Aggregation {
		case AggregationGCN:
			dinv = grow(sc, &sc.dinv, num)
		case AggregationMean:
			invDeg = grow(sc, &sc.invDeg, num)
		}
	}
	if n.InputNorm == InputNormRow {
		rowNorm = grow(sc, &sc.rowNorm, num)
	}
	first := &n.Layers[0]
	var scale []float32 // the first transform's row scales
	if rowNorm != nil && first.Aggregation == AggregationGCN {
		scale = grow(sc, &sc.scale, num)
	}
	parallel(rows, func(lo, hi int) {
		off := adj.Offsets
		if dinv != nil {
			for v := lo; v < hi; v++ {
				dinv[v] = float32(1 / math.Sqrt(float64(1+off[v+1]-off[v])))
			}
		}
		if invDeg != nil {
			for v := lo; v < hi; v++ {
				invDeg[v] = float32(1 / float64(1+off[v+1]-off[v]))
			}
		}
		if rowNorm != nil {
			rowSumInverse(x, n.FeatureDim, lo, hi, rowNorm)
		}
		if scale != nil {
			for v := lo; v < hi; v++ {
				scale[v] = rowNorm[v] * dinv[v]
			}
		}
	})
	if scale == nil {
		scale = n.layerScale(0, dinv, rowNorm)
	}

	if opts.KeepLayers {
		out.Layers = make([][]float32, len(n.Layers))
	}
	// Each layer's aggregation is fused with the next layer's transform
	// (row by row: a node's output row is all the next transform reads of
	// it), and the last layer's with the softmax, so no layer's output is
	// stored unless KeepLayers asks: the buffers are the transformed rows h
	// of the current and the next layer (N x stride each) and the
	// probabilities. The arithmetic is that of transform and aggregate, in
	// the same order, so the result is the same bit for bit as running them
	// layer after layer.
	h := grow(sc, &sc.h, num*stride(first.Out))
	w := padWeight(first)
	parallel(rows, func(lo, hi int) { transform(x, first.In, w, stride(first.Out), scale, lo, hi, h) })
	// sc.spare is the other h buffer, reused from two layers back. Both
	// stay in sc whatever the path out (a cancelled pass too), so that
	// they go back to the pool.
	for li := range n.Layers {
		l := &n.Layers[li]
		if err := ctx.Err(); err != nil {
			return Outputs{}, err
		}
		post := n.layerPost(li, dinv, invDeg)
		var keep []float32
		if opts.KeepLayers {
			keep = make([]float32, num*l.Out)
			out.Layers[li] = keep
		}
		if li == len(n.Layers)-1 {
			probs := make([]float32, num*l.Out)
			parallel(rows, func(lo, hi int) {
				aggregate(adj, h, l.Out, post, l.Bias, l.Activation, lo, hi, probs)
				if keep != nil {
					copy(keep[lo*l.Out:hi*l.Out], probs[lo*l.Out:hi*l.Out])
				}
				for v := lo; v < hi; v++ {
					softmax(probs[v*l.Out : (v+1)*l.Out])
				}
			})
			out.Probabilities = probs
			break
		}
		next := &n.Layers[li+1]
		nst := stride(next.Out)
		nextH := grow(sc, &sc.spare, num*nst)
		nextW := padWeight(next)
		nextScale := n.layerScale(li+1, dinv, rowNorm)
		parallel(rows, func(lo, hi int) {
			aggregateTransform(adj, h, l, post, keep, nextW, nst, nextScale, lo, hi, nextH)
		})
		sc.spare, sc.h = sc.h, sc.spare
		h = nextH
	}
	return out, nil
}

// layerPost is what layer li's Aggregation multiplies a target row by after
// the sum (nil: 1).
func (n *Network) layerPost(li int, dinv, invDeg []float32) []float32 {
	switch n.Layers[li].Aggregation {
	case AggregationGCN:
		return dinv
	case AggregationMean:
		return invDeg
	}
	return nil
}

// layerScale is what layer li's transform multiplies each row by: its
// Aggregation's pre-scale (dinv for gcn), times the input row normalisation
// for the first layer (nil: 1).
func (n *Network) layerScale(li int, dinv, rowNorm []float32) []float32 {
	var pre []float32
	if n.Layers[li].Aggregation == AggregationGCN {
		pre = dinv
	}
	switch {
	case li == 0 && rowNorm != nil && pre != nil:
		scale := make([]float32, len(pre))
		for v := range scale {
			scale[v] = rowNorm[v] * pre[v]
		}
		return scale
	case li == 0 && rowNorm != nil:
		return rowNorm
	}
	return pre
}

// aggregateTransform is aggregate for layer l on targets [lo, hi) followed,
// row by row, by transform for the next layer (weight nextW padded to
// stride nst, row scales nextScale) into nextH; keep, when not nil,
// receives l's output rows too. Row by row means the output row is still in
// cache when the next transform reads it.
func aggregateTransform(adj *Adjacency, h []float32, l *Layer, post, keep, nextW []float32, nst int, nextScale []float32, lo, hi int, nextH []float32) {
	o := l.Out
	off, src := adj.Offsets, adj.Sources
	st := stride(o)
	acc := make([]float32, st)
	f := newRowFinish(l.Bias, st, l.Activation)
	for d := lo; d < hi; d++ {
		if post != nil {
			f.post = post[d]
		}
		sumRows(acc, h[d*st:], h, src[off[d]:off[d+1]], st, f)
		row := acc[:o]
		if keep != nil {
			copy(keep[d*o:(d+1)*o], row)
		}
		s := float32(1)
		if nextScale != nil {
			s = nextScale[d]
		}
		matRow(nextH[d*nst:], row, nextW, nst, s)
	}
}

// newRowFinish is the rowFinish of a layer with this bias (nil: none) and
// activation, rows of stride st, post 1.
func newRowFinish(bias []float32, st int, act Activation) rowFinish {
	f := rowFinish{post: 1, bias: make([]float32, st), relu: act == ActivationReLU}
	for j := range f.bias {
		f.bias[j] = float32(math.Copysign(0, -1))
	}
	copy(f.bias, bias)
	return f
}

// parallel runs fn on each range of bounds (see splitTargets), the first on
// the calling goroutine.
func parallel(bounds []int, fn func(lo, hi int)) {
	if len(bounds) <= 2 {
		fn(bounds[0], bounds[len(bounds)-1])
		return
	}
	var wg sync.WaitGroup
	for k := 1; k+1 < len(bounds); k++ {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(bounds[k], bounds[k+1])
	}
	fn(bounds[0], bounds[1])
	wg.Wait()
}

// rowSumInverse writes 1/sum(x[v]) for rows [lo, hi), 0 where the sum is 0
// (the model's row normalisation: an all-zero row stays zero).
func rowSumInverse(x []float32, f, lo, hi int, inv []float32) {
	for v := lo; v < hi; v++ {
		var s float32
		for _, a := range x[v*f : (v+1)*f] {
			s += a
		}
		if s == 0 {
			inv[v] = 0
		} else {
			inv[v] = 1 / s
		}
	}
}

// stride is the row length of a layer's transformed rows h: Out rounded up
// to a multiple of 8, so that the inner loops run on fixed 8-wide blocks
// (no bounds checks, unrolled) whatever the width; the padding stays zero.
func stride(o int) int { return (o + 7) &^ 7 }

// padWeight returns l's weight with each row padded to stride(l.Out)
// (zeros), or the weight itself when no padding is needed.
func padWeight(l *Layer) []float32 {
	st := stride(l.Out)
	if st == l.Out {
		return l.Weight
	}
	w := make([]float32, l.In*st)
	for i := range l.In {
		copy(w[i*st:], l.Weight[i*l.Out:(i+1)*l.Out])
	}
	return w
}

// transform writes h[v] = scale[v] * (in[v] @ W) for rows [lo, hi) (scale
// nil: 1), rows of h stride(Out) long, w the padded weight (padWeight).
// Zero inputs are skipped: bag-of-words features are mostly zeros (Cora's
// 98.7%), and after a ReLU about half of a hidden layer is.
func transform(in []float32, k int, w []float32, st int, scale []float32, lo, hi int, h []float32) {
	for v := lo; v < hi; v++ {
		s := float32(1)
		if scale != nil {
			s = scale[v]
		}
		matRow(h[v*st:], in[v*k:(v+1)*k], w, st, s)
	}
}

// aggregate writes out[d] = act(post[d] * (h[d] + sum of h[s] over d's
// row) + bias) for targets [lo, hi) (post nil: 1); h has rows of
// stride(o), out of o. Each row's sum runs in the Adjacency's order.
func aggregate(adj *Adjacency, h []float32, o int, post, bias []float32, act Activation, lo, hi int, out []float32) {
	off, src := adj.Offsets, adj.Sources
	st := stride(o)
	acc := make([]float32, st)
	f := newRowFinish(bias, st, act)
	for d := lo; d < hi; d++ {
		if post != nil {
			f.post = post[d]
		}
		sumRows(acc, h[d*st:], h, src[off[d]:off[d+1]], st, f)
		copy(out[d*o:(d+1)*o], acc)
	}
}
