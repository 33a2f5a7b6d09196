//go:build !purego

package gcn

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkMatRowHidden is the hidden layer's transform of the large
// request alone (100k rows of 16 inputs, half of them zeros at random as
// after a ReLU, times a 16x16 or 16x8 weight), through the two kernels:
// zeros skipped by a branch, or masked without one (what matRow uses for
// rows up to maxBranchFreeInputs).
func BenchmarkMatRowHidden(b *testing.B) {
	const rows, k = 100_000, 16
	r := rand.New(rand.NewPCG(9, 9))
	in := make([]float32, rows*k)
	for i := range in {
		if r.IntN(2) == 0 {
			in[i] = r.Float32()
		}
	}
	for _, st := range []int{16, 8} {
		w := make([]float32, k*st)
		for i := range w {
			w[i] = r.Float32() - 0.5
		}
		out := make([]float32, rows*st)
		for _, kind := range []struct {
			name    string
			m8, m16 func(dst, in, w *float32, k, wRowBytes int, scale float32)
		}{{"skip", matRow8, matRow16}, {"masked", matRow8NB, matRow16NB}} {
			m := kind.m8
			if st == 16 {
				m = kind.m16
			}
			b.Run(strconv.Itoa(st)+"/"+kind.name, func(b *testing.B) {
				for b.Loop() {
					for v := range rows {
						m(&out[v*st], &in[v*k], &w[0], k, 4*st, 1)
					}
				}
			})
		}
	}
}
