//go:build !ortembed

package ortlib

// embedded is empty without the ortembed build tag: the library comes from
// disk (see Resolve).
var embedded []byte
