package bufpool

import "time"

// Kept keeps values that hold pointers (strings, maps, slices of them),
// which mapped memory cannot hold since the collector does not look inside
// it, on the heap for reuse, within the bounds a Pool has: at most
// maxBytes kept (a value put back over it is dropped), each dropped after
// timeout unused. What Kept drops, the collector frees. A Kept is safe for
// concurrent use; a nil *Kept keeps nothing.
type Kept[T any] struct {
	idle *idleSet[*T]
	size func(*T) int64
}

// NewKept returns a Kept of at most maxBytes (as size reports each value;
// not positive: nothing is kept) and timeout.
func NewKept[T any](maxBytes int64, timeout time.Duration, size func(*T) int64) *Kept[T] {
	if maxBytes <= 0 {
		return nil
	}
	return &Kept[T]{idle: newIdleSet(maxBytes, timeout, func(*T, int) {}), size: size}
}

// Get returns the largest value kept (the likeliest to fit without
// growing), or nil when none is.
func (k *Kept[T]) Get() *T {
	if k == nil {
		return nil
	}
	v, _ := k.idle.takeLargest()
	return v
}

// Put keeps v for a later Get, or drops it when keeping it would take the
// bytes kept over the bound, or after Close.
func (k *Kept[T]) Put(v *T) {
	if k == nil || v == nil {
		return
	}
	// A class per distinct size: the set's bound counts exact bytes.
	k.idle.keep(v, int(max(k.size(v), 1)))
}

// Bytes is the bytes kept now.
func (k *Kept[T]) Bytes() int64 {
	if k == nil {
		return 0
	}
	return k.idle.idleBytes()
}

// Close drops everything kept and keeps nothing from now on.
func (k *Kept[T]) Close() {
	if k != nil {
		k.idle.close()
	}
}
