//go:build linux && cgo

// Package memtrim keeps the C heap from growing over model reloads.
//
// ONNX Runtime allocates with glibc's malloc from whichever OS thread the Go
// runtime ran the cgo call on. glibc gives threads their own malloc arenas
// (up to 8 per core) and keeps freed arena memory mapped, so sessions that
// come and go leave RSS behind: +30% over 200 reloads of the bundled models
// on 2 cores. Two arenas and a trim after each unload keep it within a few
// percent (docs/BENCHMARKS.md, "Model reload memory").
package memtrim

// #include <malloc.h>
import "C"

import (
	"os"
	"sync"
)

// arenas is the malloc arena limit LimitArenas sets. Two is what JVM and
// glibc guides commonly suggest for servers; ONNX Runtime's own arena
// allocator makes few malloc calls per run, so contention stays low.
const arenas = 2

var limitOnce sync.Once

// LimitArenas caps glibc's malloc arenas at 2 (M_ARENA_MAX) for the rest of
// the process, unless MALLOC_ARENA_MAX or GLIBC_TUNABLES in the environment
// already say what the operator wants. Call it before the first model loads.
func LimitArenas() {
	limitOnce.Do(func() {
		if os.Getenv("MALLOC_ARENA_MAX") != "" || os.Getenv("GLIBC_TUNABLES") != "" {
			return
		}
		C.mallopt(C.M_ARENA_MAX, arenas)
	})
}

// Trim gives the free memory of every malloc arena back to the OS
// (malloc_trim(0)). It takes about a millisecond; call it after freeing
// something big, not per request.
func Trim() { C.malloc_trim(0) }
