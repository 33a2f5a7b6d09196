package serving

import (
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestCostCalibrated: Cost is within 30% of the peak RSS over idle measured
// by bench/calibrate.sh (one request at a time, the server's defaults: the
// gcpace.Pacer engaged from 32 MiB, 2-core machine, 2026-12-03 19:05 UTC;
// docs/BENCHMARKS.md "Memory per request"), and CostFor picks CostORT for a
// model ONNX Runtime runs.
func TestCostCalibrated(t *testing.T) {
	for _, m := range []struct {
		name                            string
		wire                            int64
		nodes, edges, features, classes int
		measuredMB                      float64
	}{
		{"karate", 5880, 34, 78, 34, 2, 5.0},
		{"medium", 541000, 2708, 10556, 32, 7, 11.7},
		{"cora", 15640000, 2708, 5278, 1433, 7, 91.5},
		{"large", 16480000, 100000, 500000, 16, 7, 92.7},
	} {
		info := gcn.Info{FeatureDim: m.features, NumClasses: m.classes, Native: true}
		got := float64(CostFor(info, m.wire, m.nodes, m.edges)) / (1 << 20)
		if r := got / m.measuredMB; r < 0.7 || r > 1.3 {
			t.Errorf("%s: Cost %.1f MB, measured %.1f MB (ratio %.2f), want within 30%%", m.name, got, m.measuredMB, r)
		}
		info.Native = false
		if CostFor(info, m.wire, m.nodes, m.edges) != CostORT(m.wire, m.nodes, m.edges, m.features, m.classes) {
			t.Errorf("%s: CostFor of a model ORT runs is not CostORT", m.name)
		}
	}
}
