//go:build linux && cgo

// Package memtrim returns the C heap's free memory to the operating system.
//
// ONNX Runtime allocates with glibc's malloc from whichever OS thread the Go
// runtime ran the cgo call on, so a session's memory is spread over several
// malloc arenas, and glibc keeps freed arena memory mapped. Over many model
// reloads that reads as RSS growth (+30% over 200 reloads of the bundled
// models on 2 cores). Trimming after a session closes keeps it flat
// (docs/BENCHMARKS.md, "Model reload memory").
package memtrim

// #include <malloc.h>
import "C"

// Trim gives the free memory of every malloc arena back to the OS
// (glibc malloc_trim(0)). It takes about a millisecond; call it after
// freeing something big, not per request.
func Trim() { C.malloc_trim(0) }
