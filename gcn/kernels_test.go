package gcn

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestKernelsMatchGo: the inner loops (assembly on amd64) give the Go
// loops' results bit for bit, for every stride up to 64, empty and long
// rows, with zeros (+0 and -0, skipped), negative values and a NaN input
// (not skipped).
func TestKernelsMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	val := func() float32 {
		switch r.IntN(6) {
		case 0:
			return 0
		case 1:
			return float32(math.Copysign(0, -1))
		}
		return float32(r.NormFloat64() * 3)
	}
	for _, st := range []int{8, 16, 24, 32, 40, 64} {
		const rows = 50
		h := make([]float32, rows*st)
		for i := range h {
			h[i] = val()
		}
		h[5*st+1] = float32(math.NaN())
		for _, n := range []int{0, 1, 2, 7, 33} {
			src := make([]int32, n)
			for i := range src {
				src[i] = int32(r.IntN(rows))
			}
			self := h[3*st:]
			for _, f := range []rowFinish{
				newRowFinish(nil, st, ActivationNone),
				newRowFinish(h[:st-3], st, ActivationReLU),
				{post: 0.61, bias: h[st : 2*st], relu: true},
				{post: -1.7, bias: h[2*st : 3*st], relu: false},
			} {
				got, want := make([]float32, st), make([]float32, st)
				sumRows(got, self, h, src, st, f)
				sumRowsGo(want, self, h, src, st, f)
				if !sameBits(got, want) {
					t.Errorf("sumRows, stride %d, %d rows, %+v: %v, want %v", st, n, f, got, want)
				}
			}
		}
		for _, k := range []int{0, 1, 5, 16, 40, 64, 65, 200} { // both sides of maxBranchFreeInputs
			in := make([]float32, k)
			for i := range in {
				in[i] = val()
			}
			if k >= 40 {
				in[11] = float32(math.NaN())
			}
			w := make([]float32, k*st)
			for i := range w {
				w[i] = val()
			}
			for _, scale := range []float32{1, 0.37} {
				got, want := make([]float32, st), make([]float32, st)
				for i := range got {
					got[i], want[i] = 9, 9 // must be overwritten
				}
				matRow(got, in, w, st, scale)
				matRowGo(want, in, w, st, scale)
				if !sameBits(got, want) {
					t.Errorf("matRow, stride %d, %d inputs, scale %v: %v, want %v", st, k, scale, got, want)
				}
			}
		}
	}
}

// TestForwardAdjacencyChecked: a malformed Adjacency from outside is an
// error naming what is wrong, not a read out of bounds.
func TestForwardAdjacencyChecked(t *testing.T) {
	net := &Network{FeatureDim: 1, InputNorm: InputNormNone, Output: OutputSoftmax,
		Layers: []Layer{{Aggregation: AggregationSum, In: 1, Out: 2, Weight: []float32{1, -1}, Activation: ActivationNone}}}
	x := []float32{1, 2, 3}
	for _, tc := range []struct {
		adj  Adjacency
		want string
	}{
		{Adjacency{NumNodes: 3, Offsets: []int32{0, 1, 2}, Sources: []int32{1, 0}}, "offsets"},
		{Adjacency{NumNodes: 3, Offsets: []int32{0, 2, 1, 2}, Sources: []int32{1, 0}}, "offset 2 (1) is below"},
		{Adjacency{NumNodes: 3, Offsets: []int32{0, 1, 2, 3}, Sources: []int32{1, 0}}, "offsets"},
		{Adjacency{NumNodes: 3, Offsets: []int32{0, 1, 2, 2}, Sources: []int32{1, 3}}, "source 1 is 3"},
		{Adjacency{NumNodes: 3, Offsets: []int32{0, 1, 2, 2}, Sources: []int32{-1, 0}}, "source 0 is -1"},
	} {
		_, err := net.ForwardAdjacency(context.Background(), x, &tc.adj, ForwardOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("offsets %v, sources %v: error %v, want one containing %q", tc.adj.Offsets, tc.adj.Sources, err, tc.want)
		}
	}
	ok := Adjacency{NumNodes: 3, Offsets: []int32{0, 1, 2, 2}, Sources: []int32{1, 0}}
	if _, err := net.ForwardAdjacency(context.Background(), x, &ok, ForwardOptions{}); err != nil {
		t.Errorf("well-formed adjacency: %v", err)
	}
}

// TestExpNonPositive: the softmax's exponential is math.Exp's within 1e-9
// relative over the range a softmax meets, 0 far below it, NaN for NaN.
func TestExpNonPositive(t *testing.T) {
	worst := 0.0
	for i := range 2_000_001 {
		x := -750 * float64(i) / 2_000_000
		got, want := expNonPositive(x), math.Exp(x)
		if x < -708 {
			if got != 0 {
				t.Fatalf("exp(%v) = %v, want 0", x, got)
			}
			continue
		}
		worst = max(worst, math.Abs(got-want)/want)
	}
	for _, x := range []float64{0, -1e-300, -0.5, -0.34657359027997264, -1, -20.5, -87.3, -103.97, -707.9} {
		got, want := expNonPositive(x), math.Exp(x)
		worst = max(worst, math.Abs(got-want)/want)
	}
	t.Logf("worst relative error %.3g", worst)
	if worst > 1e-9 {
		t.Errorf("worst relative error %.3g, want <= 1e-9", worst)
	}
	if got := expNonPositive(math.Inf(-1)); got != 0 {
		t.Errorf("exp(-Inf) = %v, want 0", got)
	}
	if got := expNonPositive(math.NaN()); !math.IsNaN(got) {
		t.Errorf("exp(NaN) = %v, want NaN", got)
	}
}
