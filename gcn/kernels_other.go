//go:build !amd64 || purego

package gcn

// sumRows is sumRowsGo (the assembly is amd64's; the purego build tag
// leaves it out there too).
func sumRows(acc, self, h []float32, src []int32, st int, f rowFinish) {
	sumRowsGo(acc, self, h, src, st, f)
}

// matRow is matRowGo (the assembly is amd64's).
func matRow(dst, in, w []float32, st int, scale float32) { matRowGo(dst, in, w, st, scale) }
