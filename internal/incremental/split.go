package incremental

import "time"

// splitWork is the operation count above which a step of Apply is split
// across the workers when splitting pays: on the 2-core machine with
// nothing else running, a batch of 100 on the arxiv-sized graph applied
// in 0.52-0.78 ms split against 0.80-0.93 ms on one goroutine, and the
// scores' p50 (which waits for Apply) fell by about 0.2 ms
// (docs/INCREMENTAL.md, "Parallelism").
const splitWork = 1 << 15

// splitChooser decides, Apply by Apply, whether steps are split across
// workers (parallelMin splitWork) or run on one goroutine (parallelWork),
// by the wall time each way has taken per change lately. Which one wins
// depends on the machine, not on the graph: with a free core the split
// halves the long steps; with the cores busy (scorers, other processes)
// the second worker waits for one, and the split took longer and cost 60%
// more CPU per update. Wall time is what scores wait for, so that is what
// it compares. It probes the way it is not using for probeLen Applies
// every probeEvery, so a machine whose load changes is followed within a
// few hundred milliseconds. Only Apply (one goroutine at a time) uses it.
type splitChooser struct {
	on    bool
	calls int
	// nsPer is each way's moving average of wall ns per operation (0: no
	// sample yet); index 0 one goroutine, 1 split.
	nsPer [2]float64
	// mode is the way the current Apply runs.
	mode int
	// ops counts the current Apply's operations (the work estimates of
	// its steps): the wall time is compared per operation, since a batch
	// that touches a hub does far more work than one that does not.
	ops int
}

const (
	probeEvery = 64
	probeLen   = 4
	// splitWeight is the weight of a new sample in nsPer.
	splitWeight = 0.25
)

// pick returns the way the next Apply runs: each way in turn until both
// have a sample, then the faster one, except during a probe of the other.
func (c *splitChooser) pick() int {
	c.calls++
	c.ops = 0
	switch {
	case c.nsPer[0] == 0:
		c.mode = 0
	case c.nsPer[1] == 0:
		c.mode = 1
	default:
		best := 0
		if c.nsPer[1] < c.nsPer[0] {
			best = 1
		}
		c.mode = best
		if c.calls%probeEvery < probeLen {
			c.mode = 1 - best
		}
	}
	return c.mode
}

// record folds in the wall time d of the Apply run the way pick returned
// (its operations counted in ops since).
func (c *splitChooser) record(d time.Duration) {
	if c.ops <= 0 {
		return
	}
	ns := float64(d.Nanoseconds()) / float64(c.ops)
	if ns <= 0 {
		ns = 1
	}
	if old := c.nsPer[c.mode]; old == 0 {
		c.nsPer[c.mode] = ns
	} else {
		c.nsPer[c.mode] = old + splitWeight*(ns-old)
	}
}
