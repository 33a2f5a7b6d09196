//go:build !linux || !cgo

package memtrim

// LimitArenas does nothing without glibc.
func LimitArenas() {}

// Trim does nothing without glibc.
func Trim() {}
