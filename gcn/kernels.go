package gcn

// The inner loops of the native pass, on rows of a stride st that is a
// multiple of 8 (every layer's, see stride). On
// amd64 they are SSE2 assembly (kernels_amd64.s; SSE2 is part of the
// amd64 baseline, so no feature check): the Go compiler neither
// vectorises nor keeps a 16-float accumulator in registers, and these two
// loops were most of a large request's CPU. Elsewhere they are the Go
// loops below. Both do the same float32 operations in the same order
// (each lane of a vector add or multiply is the scalar IEEE operation), so
// results are the same bit for bit on every architecture and for every
// worker count; TestKernelsMatchGo holds the assembly to the Go.

// rowFinish is the end of a layer applied to each summed row:
// act(post * row + bias).
type rowFinish struct {
	post float32
	// bias has the row's stride: the layer's bias, then -0 (adding -0
	// changes nothing, not even the sign of a zero; a layer without bias
	// has -0 throughout).
	bias []float32
	relu bool
}

// sumRowsGo writes acc[:st] = act(post * (self[:st] + the sum of
// h[s*st:(s+1)*st] for each s of src, added in src's order) + bias).
func sumRowsGo(acc, self, h []float32, src []int32, st int, f rowFinish) {
	copy(acc[:st], self[:st])
	for _, s := range src {
		r := h[int(s)*st : int(s)*st+st]
		for j := range st {
			acc[j] += r[j]
		}
	}
	for j := range acc[:st] {
		v := float32(acc[j]*f.post) + f.bias[j]
		if f.relu && v < 0 {
			v = 0
		}
		acc[j] = v
	}
}

// matRowGo writes dst[:st] = scale * (sum over i of in[i] * w[i*st:(i+1)*st]),
// added in i's order, skipping the i where in[i] == 0.
// The product is rounded to float32 before the add (the conversion forbids
// a fused multiply-add, which arm64 would otherwise use), as on amd64.
func matRowGo(dst, in, w []float32, st int, scale float32) {
	clear(dst[:st])
	for i, a := range in {
		if a == 0 {
			continue
		}
		r := w[i*st : i*st+st]
		for j := range st {
			dst[j] += float32(a * r[j])
		}
	}
	for j := range dst[:st] {
		dst[j] *= scale
	}
}
