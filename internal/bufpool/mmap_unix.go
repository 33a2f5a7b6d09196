//go:build unix

package bufpool

import "syscall"

// mapBytes maps n bytes of zeroed anonymous memory outside the Go heap.
func mapBytes(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// unmapBytes releases a mapping mapBytes made; b must be all of it.
func unmapBytes(b []byte) {
	// An error means b was not a whole mapping: a bug, but the memory is
	// then merely kept.
	_ = syscall.Munmap(b)
}
