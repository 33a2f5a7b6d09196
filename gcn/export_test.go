package gcn

// Softmax exposes softmax to the external test package.
var Softmax = softmax

// ReportCPU exposes reportCPU to the external benchmarks.
var ReportCPU = reportCPU

// ScratchInUse is the bytes of m's forward scratch pool handed out and not
// given back (0 without a pool).
func ScratchInUse(m *Model) int64 {
	if m.core.scratch == nil {
		return 0
	}
	return m.core.scratch.bufs.Stats().InUse
}

// ScratchMaps is the mappings m's forward scratch pool has made.
func ScratchMaps(m *Model) int64 {
	if m.core.scratch == nil {
		return 0
	}
	return m.core.scratch.bufs.Stats().Maps
}
