//go:build race

package graphwire

// raceEnabled is true under -race, whose instrumentation changes
// allocation counts.
const raceEnabled = true
