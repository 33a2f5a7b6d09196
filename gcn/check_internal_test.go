package gcn

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestFirstOutOfRange(t *testing.T) {
	const n = 10
	for _, size := range []int{0, 1, 3, 4, 5, 4095, 4096, 4097, 10000} {
		index := make([]int64, size)
		for j := range index {
			index[j] = int64(j % n)
		}
		if got := firstOutOfRange(index, n); got != -1 {
			t.Errorf("%d values in range: got %d, want -1", size, got)
		}
		for _, pos := range []int{0, size / 2, size - 1} {
			for _, bad := range []int64{-1, n, n + 1, math.MinInt64, math.MaxInt64} {
				if pos < 0 || pos >= size {
					continue
				}
				saved := index[pos]
				index[pos] = bad
				index[size-1] = -5 // a second bad value, never the answer unless at pos
				if pos == size-1 {
					index[pos] = bad
				}
				if got := firstOutOfRange(index, n); got != pos {
					t.Errorf("%d values, %d at %d: got %d, want %d", size, bad, pos, got, pos)
				}
				index[pos], index[size-1] = saved, int64((size-1)%n)
			}
		}
	}
}

// BenchmarkTensorsCheck is the validation Predict runs on every call
// (shapes, node index range, finite features), alone, on a Cora-shaped and
// the large graph.
func BenchmarkTensorsCheck(b *testing.B) {
	for _, p := range []struct {
		name                   string
		nodes, edges, features int
	}{
		{"karate", 34, 78, 34},
		{"cora", 2708, 5278, 1433},
		{"large", 100_000, 500_000, 16},
	} {
		b.Run(p.name, func(b *testing.B) {
			g, err := graphwire.FromMessage(graphwire.SyntheticGraph(p.nodes, p.edges, p.features, 1), p.features, graphwire.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			t := Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex}
			b.SetBytes(int64(4*len(t.Features) + 8*len(t.EdgeIndex)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if err := t.check(p.features, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU starts measuring this process's CPU time; the function it
// returns reports it per iteration as cpu-ms/op (steadier than ns/op on a
// shared machine).
func reportCPU(b *testing.B) func() {
	start := testenv.CPUTime()
	return func() { b.ReportMetric(float64(testenv.CPUTime()-start)/1e6/float64(b.N), "cpu-ms/op") }
}

// TestCheckHalves: on tensors large enough to be searched in two halves,
// check names the first bad value wherever it is (first half, second half,
// at the cut, both halves bad), as the one-pass search does.
func TestCheckHalves(t *testing.T) {
	const n, e, f = 1 << 19, halvesFrom, 4 // 2M edge values, 2M features
	base := Tensors{NumNodes: n, Features: make([]float32, n*f), EdgeIndex: make([]int64, 2*e)}
	for j := range base.EdgeIndex {
		base.EdgeIndex[j] = int64(j % n)
	}
	if err := base.check(f, Limits{}); err != nil {
		t.Fatalf("valid tensors: %v", err)
	}
	cut := len(base.EdgeIndex) / 2
	for _, bad := range [][]int{{3}, {cut - 1}, {cut}, {cut + 5}, {len(base.EdgeIndex) - 1}, {cut + 7, 11}} {
		idx := append([]int64(nil), base.EdgeIndex...)
		for _, j := range bad {
			idx[j] = n
		}
		want := slices.Min(bad)
		got := firstInHalves(len(idx), func(lo, hi int) int { return firstOutOfRange(idx[lo:hi], n) })
		if got != want || firstOutOfRange(idx, n) != want {
			t.Errorf("bad edge values at %v: first found %d (one pass %d), want %d", bad, got, firstOutOfRange(idx, n), want)
		}
		tt := base
		tt.EdgeIndex = idx
		if err := tt.check(f, Limits{}); err == nil {
			t.Errorf("bad edge values at %v: check passed", bad)
		}
	}
	cut = len(base.Features) / 2
	for _, bad := range [][]int{{0}, {cut - 1}, {cut}, {len(base.Features) - 1}, {cut + 3, 2}} {
		x := append([]float32(nil), base.Features...)
		for _, k := range bad {
			x[k] = float32(math.Inf(1))
		}
		want := slices.Min(bad)
		tt := base
		tt.Features = x
		err := tt.check(f, Limits{})
		wantMsg := "x[" + strconv.Itoa(want/f) + "][" + strconv.Itoa(want%f) + "] is +Inf"
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("non-finite features at %v: %v, want %q", bad, err, wantMsg)
		}
	}
}
