//go:build !unix

package bufpool

// mapBytes allocates on the heap where there is no mmap: the pool still
// bounds and reuses the buffers, but the collector counts them.
func mapBytes(n int) ([]byte, error) { return make([]byte, n), nil }

// unmapBytes leaves b to the garbage collector.
func unmapBytes([]byte) {}
