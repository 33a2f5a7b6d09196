package serving

import (
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestCostCalibrated: Cost is within 30% of the peak RSS over idle of one
// request at a time with the server's defaults (no pacer; karate and medium
// by bench/calibrate.sh, which the pacer never engages for; Cora-shaped and
// large with --gc-pace-bytes 0, cmd/loadgen --pid on a fresh server, quiet
// 2-core machine, 2026-12-03 19:55 UTC), PacedCost within 30% of the same
// with the gcpace.Pacer engaged from 32 MiB (bench/calibrate.sh, 19:05
// UTC; docs/BENCHMARKS.md "Memory per request"), and CostFor picks CostORT
// for a model ONNX Runtime runs.
func TestCostCalibrated(t *testing.T) {
	for _, m := range []struct {
		name                            string
		wire                            int64
		nodes, edges, features, classes int
		measuredMB, pacedMB             float64
	}{
		{"karate", 5880, 34, 78, 34, 2, 5.0, 5.0},
		{"medium", 541000, 2708, 10556, 32, 7, 11.7, 11.7},
		{"cora", 15640000, 2708, 5278, 1433, 7, 165, 91.5},
		{"large", 16480000, 100000, 500000, 16, 7, 163, 92.7},
	} {
		info := gcn.Info{FeatureDim: m.features, NumClasses: m.classes, Native: true}
		got := float64(CostFor(info, m.wire, m.nodes, m.edges)) / (1 << 20)
		if r := got / m.measuredMB; r < 0.7 || r > 1.3 {
			t.Errorf("%s: Cost %.1f MB, measured %.1f MB (ratio %.2f), want within 30%%", m.name, got, m.measuredMB, r)
		}
		paced := float64(PacedCost(m.wire, m.nodes, m.edges, m.features, m.classes)) / (1 << 20)
		if r := paced / m.pacedMB; r < 0.7 || r > 1.3 {
			t.Errorf("%s: PacedCost %.1f MB, measured %.1f MB with the pacer (ratio %.2f), want within 30%%", m.name, paced, m.pacedMB, r)
		}
		t.Logf("%s: Cost %.1f MB (measured %.1f), PacedCost %.1f MB (measured %.1f)", m.name, got, m.measuredMB, paced, m.pacedMB)
		info.Native = false
		if CostFor(info, m.wire, m.nodes, m.edges) != CostORT(m.wire, m.nodes, m.edges, m.features, m.classes) {
			t.Errorf("%s: CostFor of a model ORT runs is not CostORT", m.name)
		}
	}
}
