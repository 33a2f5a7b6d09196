//go:build race

package graphs_test

// raceEnabled: the race detector slows Go code about tenfold; the 100k-node
// tests do fewer rounds under it.
const raceEnabled = true
