package incremental

import (
	"testing"
	"time"
)

// TestSplitChooser: the chooser samples both ways, then runs the one with
// the lower wall time per change, probes the other probeLen times every
// probeEvery Applies, and follows a change of which one is faster.
func TestSplitChooser(t *testing.T) {
	var c splitChooser
	cost := [2]time.Duration{900 * time.Microsecond, 500 * time.Microsecond}
	run := func(n int) (used [2]int) {
		for range n {
			m := c.pick()
			used[m]++
			c.ops += 100_000
			c.record(cost[m])
		}
		return used
	}
	if used := run(2); used != [2]int{1, 1} {
		t.Fatalf("first two Applies ran %v (one goroutine, split), want one each", used)
	}
	used := run(10 * probeEvery)
	if want := 10 * probeLen; used[0] != want {
		t.Errorf("split faster: %d of %d Applies on one goroutine, want only the %d probes", used[0], 10*probeEvery, want)
	}
	// The machine gets busy: splitting now takes longer.
	cost = [2]time.Duration{900 * time.Microsecond, 1500 * time.Microsecond}
	run(2 * probeEvery) // a probe or two to notice
	used = run(10 * probeEvery)
	if want := 10 * probeLen; used[1] != want {
		t.Errorf("one goroutine faster: %d of %d Applies split, want only the %d probes", used[1], 10*probeEvery, want)
	}
	// An Apply of no work teaches nothing.
	before := c.nsPer
	c.pick()
	c.record(time.Second)
	if c.nsPer != before {
		t.Errorf("an Apply of no work moved the averages from %v to %v", before, c.nsPer)
	}
}
