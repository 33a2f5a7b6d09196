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
	if err := ctx.Err(); err != nil {
		return Outputs{}, err
	}
	if len(t.Features) != t.NumNodes*n.FeatureDim {
		return Outputs{}, fmt.Errorf("x: %d values for %d nodes of %d features", len(t.Features), t.NumNodes, n.FeatureDim)
	}
	adj, err := NewAdjacency(t.NumNodes, t.EdgeIndex)
	if err != nil {
		return Outputs{}, err
	}
	return n.ForwardAdjacency(ctx, t.Features, adj, opts)
}

// ForwardAdjacency runs the network on features x ([N, FeatureDim]
// row-major) over a prebuilt Adjacency: for callers that keep a graph's
// adjacency between requests.
func (n *Network) ForwardAdjacency(ctx context.Context, x []float32, adj *Adjacency, opts ForwardOptions) (Outputs, error) {
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
		widest := 0
		for _, l := range n.Layers {
			widest = max(widest, l.Out)
		}
		work := (len(adj.Sources) + num) * widest
		workers = min(runtime.GOMAXPROCS(0), max(1, work/workPerGoroutine))
	}
	rows := adj.splitTargets(workers)

	// Per-node scales: what each Aggregation multiplies a source row by
	// before the sum (pre) and a target row by after it (post).
	var dinv, invDeg []float32
	for _, l := range n.Layers {
		switch {
		case l.Aggregation == AggregationGCN && dinv == nil:
			dinv = make([]float32, num)
			for v := range dinv {
				dinv[v] = float32(1 / math.Sqrt(float64(adj.Degree(v))))
			}
		case l.Aggregation == AggregationMean && invDeg == nil:
			invDeg = make([]float32, num)
			for v := range invDeg {
				invDeg[v] = float32(1 / float64(adj.Degree(v)))
			}
		}
	}
	var rowNorm []float32
	if n.InputNorm == InputNormRow {
		rowNorm = make([]float32, num)
		parallel(rows, func(lo, hi int) { rowSumInverse(x, n.FeatureDim, lo, hi, rowNorm) })
	}

	if opts.KeepLayers {
		out.Layers = make([][]float32, len(n.Layers))
	}
	// Two scratch buffers of N x the widest layer, reused layer after layer
	// (h, the transformed rows, and the hidden output); the last layer
	// writes a fresh slice that becomes Probabilities.
	var scratchH, scratchOut []float32
	in := x
	for li := range n.Layers {
		l := &n.Layers[li]
		if err := ctx.Err(); err != nil {
			return Outputs{}, err
		}
		var pre, post []float32
		switch l.Aggregation {
		case AggregationGCN:
			pre, post = dinv, dinv
		case AggregationMean:
			post = invDeg
		}
		var scale []float32
		switch {
		case li == 0 && rowNorm != nil && pre != nil:
			scale = make([]float32, num)
			for v := range scale {
				scale[v] = rowNorm[v] * pre[v]
			}
		case li == 0 && rowNorm != nil:
			scale = rowNorm
		default:
			scale = pre
		}
		st := stride(l.Out)
		if cap(scratchH) < num*st {
			scratchH = make([]float32, num*st)
		}
		h := scratchH[:num*st]
		w := padWeight(l)
		parallel(rows, func(lo, hi int) { transform(in, l.In, w, st, scale, lo, hi, h) })
		if err := ctx.Err(); err != nil {
			return Outputs{}, err
		}
		size := num * l.Out
		var dst []float32
		switch {
		case li == len(n.Layers)-1 || opts.KeepLayers:
			dst = make([]float32, size)
		default:
			if cap(scratchOut) < size {
				scratchOut = make([]float32, size)
			}
			dst = scratchOut[:size]
		}
		parallel(rows, func(lo, hi int) { aggregate(adj, h, l.Out, post, l.Bias, l.Activation, lo, hi, dst) })
		if opts.KeepLayers {
			out.Layers[li] = dst
			if li == len(n.Layers)-1 {
				// The probabilities must not overwrite the kept logits.
				dst = append([]float32(nil), dst...)
			}
		}
		// The next layer reads dst only to compute its h, so its output
		// may reuse dst's buffer.
		in = dst
	}
	c := n.NumClasses()
	parallel(rows, func(lo, hi int) {
		for v := lo; v < hi; v++ {
			softmax(in[v*c : (v+1)*c])
		}
	})
	out.Probabilities = in
	return out, nil
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
	if st == 16 {
		transform16(in, k, w, scale, lo, hi, h)
		return
	}
	acc := make([]float32, st)
	for v := lo; v < hi; v++ {
		clear(acc)
		for i, a := range in[v*k : (v+1)*k] {
			if a == 0 {
				continue
			}
			row := w[i*st : (i+1)*st]
			for b := 0; b+8 <= len(row); b += 8 {
				r, c := (*[8]float32)(row[b:b+8]), (*[8]float32)(acc[b:b+8])
				for j := range c {
					c[j] += a * r[j]
				}
			}
		}
		dst := h[v*st : (v+1)*st]
		s := float32(1)
		if scale != nil {
			s = scale[v]
		}
		for j, a := range acc[:len(dst)] {
			dst[j] = a * s
		}
	}
}

// aggregate writes out[d] = act(post[d] * (h[d] + sum of h[s] over d's
// row) + bias) for targets [lo, hi) (post nil: 1); h has rows of
// stride(o), out of o. Each row's sum runs in the Adjacency's order.
func aggregate(adj *Adjacency, h []float32, o int, post, bias []float32, act Activation, lo, hi int, out []float32) {
	off, src := adj.Offsets, adj.Sources
	st := stride(o)
	if st == 16 && o == 16 {
		aggregate16(off, src, h, post, bias, act, lo, hi, out)
		return
	}
	acc := make([]float32, st)
	for d := lo; d < hi; d++ {
		copy(acc, h[d*st:(d+1)*st])
		for _, s := range src[off[d]:off[d+1]] {
			row := h[int(s)*st : int(s)*st+st]
			for b := 0; b+8 <= len(row); b += 8 {
				r, c := (*[8]float32)(row[b:b+8]), (*[8]float32)(acc[b:b+8])
				for j := range c {
					c[j] += r[j]
				}
			}
		}
		p := float32(1)
		if post != nil {
			p = post[d]
		}
		dst := out[d*o : (d+1)*o]
		acc := acc[:len(dst)]
		for j := range dst {
			v := acc[j] * p
			if bias != nil {
				v += bias[j]
			}
			if act == ActivationReLU && v < 0 {
				v = 0
			}
			dst[j] = v
		}
	}
}

// transform16 is transform for 16-wide layers.
func transform16(in []float32, k int, w, scale []float32, lo, hi int, h []float32) {
	const o = 16
	for v := lo; v < hi; v++ {
		var acc [o]float32
		for i, a := range in[v*k : (v+1)*k] {
			if a == 0 {
				continue
			}
			row := (*[o]float32)(w[i*o : i*o+o])
			for j := range acc {
				acc[j] += a * row[j]
			}
		}
		s := float32(1)
		if scale != nil {
			s = scale[v]
		}
		dst := (*[o]float32)(h[v*o : v*o+o])
		for j := range acc {
			dst[j] = acc[j] * s
		}
	}
}

// aggregate16 is aggregate for 16-wide layers (the usual hidden width):
// fixed-size rows let the compiler drop bounds checks and keep the
// accumulator in registers.
func aggregate16(off, src []int32, h []float32, post, bias []float32, act Activation, lo, hi int, out []float32) {
	const o = 16
	var b [o]float32
	if bias != nil {
		b = [o]float32(bias)
	}
	for d := lo; d < hi; d++ {
		acc := [o]float32(h[d*o : d*o+o])
		for _, s := range src[off[d]:off[d+1]] {
			row := (*[o]float32)(h[int(s)*o : int(s)*o+o])
			for j := range acc {
				acc[j] += row[j]
			}
		}
		p := float32(1)
		if post != nil {
			p = post[d]
		}
		dst := (*[o]float32)(out[d*o : d*o+o])
		for j := range acc {
			v := acc[j]*p + b[j]
			if act == ActivationReLU && v < 0 {
				v = 0
			}
			dst[j] = v
		}
	}
}
