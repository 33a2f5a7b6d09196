package serving

import (
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestCostCalibrated: Cost is within 30% of the peak RSS over idle of one
// request at a time with the server's defaults (bench/calibrate.sh: a fresh
// server per payload, requests at c=1 for 5 s, VmHWM minus VmRSS once
// SERVING; 2-core machine shared with other sessions, 2026-12-03 22:20
// UTC, with the request buffers and tensors in bufpool), PacedCost within
// 30% of the same with --gc-pace-bytes 33554432 (same run;
// docs/BENCHMARKS.md "Large request: pooled buffers"), and CostFor picks
// CostORT for a model ONNX Runtime runs.
func TestCostCalibrated(t *testing.T) {
	for _, m := range []struct {
		name                            string
		wire                            int64
		nodes, edges, features, classes int
		measuredMB, pacedMB             float64
	}{
		{"karate", 5880, 34, 78, 34, 2, 5.4, 5.0},
		{"medium", 541000, 2708, 10556, 32, 7, 6.7, 6.3},
		{"cora", 15640000, 2708, 5278, 1433, 7, 65.6, 65.0},
		{"large", 16480000, 100000, 500000, 16, 7, 80.5, 84.1},
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
