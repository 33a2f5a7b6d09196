//go:build !purego

package gcn

import "unsafe"

// sumRows is sumRowsGo on amd64: 16 columns at a time, then 8 (st is a
// multiple of 8), each lane added in src's order. The caller guarantees
// every s of src indexes a whole row of h (an Adjacency built here or
// checked, over h of NumNodes rows): the assembly does not check.
func sumRows(acc, self, h []float32, src []int32, st int, f rowFinish) {
	_, _, _ = acc[st-1], self[st-1], f.bias[st-1]
	rowBytes := 4 * st
	relu := 0
	if f.relu {
		relu = 1
	}
	srcp := unsafe.SliceData(src) // not read when src is empty
	j := 0
	for ; j+16 <= st; j += 16 {
		sumRows16(&acc[j], &self[j], &h[j], srcp, len(src), rowBytes, &f.bias[j], relu, f.post)
	}
	if j < st {
		sumRows8(&acc[j], &self[j], &h[j], srcp, len(src), rowBytes, &f.bias[j], relu, f.post)
	}
}

// matRow is matRowGo on amd64, 16 then 8 columns at a time.
func matRow(dst, in, w []float32, st int, scale float32) {
	_ = dst[st-1]
	if len(in) == 0 {
		clear(dst[:st])
		return
	}
	_ = w[len(in)*st-1]
	rowBytes := 4 * st
	m16, m8 := matRow16, matRow8
	if len(in) <= maxBranchFreeInputs {
		m16, m8 = matRow16NB, matRow8NB
	}
	j := 0
	for ; j+16 <= st; j += 16 {
		m16(&dst[j], &in[0], &w[j], len(in), rowBytes, scale)
	}
	if j < st {
		m8(&dst[j], &in[0], &w[j], len(in), rowBytes, scale)
	}
}

//go:noescape
func sumRows16(acc, self, h *float32, src *int32, n, rowBytes int, bias *float32, relu int, p float32)

//go:noescape
func sumRows8(acc, self, h *float32, src *int32, n, rowBytes int, bias *float32, relu int, p float32)

//go:noescape
func matRow16(dst, in, w *float32, k, wRowBytes int, scale float32)

//go:noescape
func matRow8(dst, in, w *float32, k, wRowBytes int, scale float32)

// maxBranchFreeInputs is the widest input row matRow multiplies without
// skipping zeros: hidden layers (after a ReLU about half their values are
// zeros, at random, so the skip is a mispredicted branch half the time).
// Wider rows are input features, bag-of-words mostly zeros (Cora's 98.7%),
// where skipping saves nearly all the work.
const maxBranchFreeInputs = 64

//go:noescape
func matRow16NB(dst, in, w *float32, k, wRowBytes int, scale float32)

//go:noescape
func matRow8NB(dst, in, w *float32, k, wRowBytes int, scale float32)
