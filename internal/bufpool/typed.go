package bufpool

import "unsafe"

// Number is an element type a tensor taken from a Pool may hold: no
// pointers, since the collector does not look inside mapped memory.
type Number interface {
	~float32 | ~float64 | ~int32 | ~int64 | ~uint32 | ~uint64
}

// Make returns a []T of length n from p's mapped memory (nil p, or fewer
// than MinBytes bytes: from the heap). Its elements are not zeroed. Give it
// back with Free once nothing reads it, and never let the collector be the
// only owner: memory p mapped is not collected.
func Make[T Number](p *Pool, n int) []T {
	size := int(unsafe.Sizeof(T(0)))
	if p == nil || n == 0 || n*size < p.opts.MinBytes {
		return make([]T, n)
	}
	b := p.Get(n * size)
	base := unsafe.SliceData(*b)
	p.mu.Lock()
	m, ok := p.owned[base]
	if ok {
		// The typed slice does not keep the handle reachable: pin it.
		m.pin = b
		p.owned[base] = m
	}
	p.mu.Unlock()
	if !ok {
		// The mapping failed and the fallback served: the heap's
		// alignment may not be T's, so make a slice instead.
		p.opts.Fallback.Put(b)
		return make([]T, n)
	}
	return unsafe.Slice((*T)(unsafe.Pointer(base)), n)
}

// Free gives back a slice Make returned, and reports whether it did: a
// slice Make took from the heap (or any other slice) is left as it is, to
// the collector. Nothing may use a slice given back, or any slice of it,
// afterwards.
func Free[T Number](p *Pool, s []T) bool {
	if p == nil || cap(s) == 0 {
		return false
	}
	base := (*byte)(unsafe.Pointer(unsafe.SliceData(s)))
	p.mu.Lock()
	m, ok := p.owned[base]
	if ok && m.pin != nil {
		h := m.pin
		m.pin = nil
		p.owned[base] = m
		p.mu.Unlock()
		p.Put(h)
		return true
	}
	p.mu.Unlock()
	return false
}
