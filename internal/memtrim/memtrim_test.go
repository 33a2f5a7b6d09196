package memtrim

import "testing"

// TestCalls: both are safe to call, repeatedly.
func TestCalls(t *testing.T) {
	LimitArenas()
	LimitArenas()
	b := make([][]byte, 100)
	for i := range b {
		b[i] = make([]byte, 1<<16)
	}
	Trim()
	Trim()
}
