package graphcheck

import (
	"hash/maphash"
	"unsafe"
)

// idIndex maps node ids to node indexes. It replaces map[string]int32 on
// the hot path because, on big graphs, lookups are where decoding spends its
// time, and nearly all of it in cache misses: a Go map's keys point into the
// request buffer, so each lookup touches the map's slot and then, to compare
// keys, an id somewhere in megabytes of request. Here a slot is 8 bytes
// (32 bits of hash, 32 bits of index) in a table at most half full, and ids
// are copied once into one dense arena, so a lookup touches a compact table
// and a compact arena, and compares bytes only when 32 hash bits already
// match.
//
// Nodes are inserted in index order 0, 1, 2, ...; the arena holds their ids
// back to back and ends[i] is where node i's id ends.
type idIndex struct {
	seed  maphash.Seed
	slots []uint64 // hash<<32 | index+1; 0 is an empty slot
	arena []byte
	ends  []uint32
	// touched keeps lookupAll's prefetching loads from being optimized away.
	touched uint64
}

func newIDIndex(nodes int) *idIndex {
	size := 8
	for size < 2*nodes {
		size <<= 1
	}
	return &idIndex{
		seed:  maphash.MakeSeed(),
		slots: make([]uint64, size),
		arena: make([]byte, 0, 8*nodes),
		ends:  make([]uint32, 0, nodes),
	}
}

// id returns node i's id as stored in the arena.
func (x *idIndex) id(i int32) string {
	start := uint32(0)
	if i > 0 {
		start = x.ends[i-1]
	}
	b := x.arena[start:x.ends[i]]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// find returns the slot where id is, or the empty slot where it would go
// (for add), with id's hash.
func (x *idIndex) find(id string) (slot int, h uint64, index int32, found bool) {
	h = maphash.String(x.seed, id)
	slot, index, found = x.probe(id, h)
	return slot, h, index, found
}

// findHashed is lookup for an id whose hash is known.
func (x *idIndex) findHashed(id string, h uint64) (int32, bool) {
	_, k, ok := x.probe(id, h)
	return k, ok
}

// probe walks id's probe sequence from its hash h.
func (x *idIndex) probe(id string, h uint64) (slot int, index int32, found bool) {
	tag := h >> 32
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return i, 0, false
		}
		if s>>32 == tag {
			k := int32(uint32(s)) - 1
			if x.id(k) == id {
				return i, k, true
			}
		}
	}
}

// lookup returns id's node index.
func (x *idIndex) lookup(id string) (int32, bool) {
	_, _, k, ok := x.find(id)
	return k, ok
}

// add stores id as the next node index in slot, which find returned for
// id with h and nothing has been added since.
func (x *idIndex) add(slot int, h uint64, id string) {
	next := uint32(len(x.ends))
	x.arena = append(x.arena, id...)
	x.ends = append(x.ends, uint32(len(x.arena)))
	x.slots[slot] = h>>32<<32 | uint64(next+1)
}

// LookupChunk is how many ids lookupAll resolves together.
const LookupChunk = 512

// lookupAll resolves every id into out (same length) and reports whether
// all were found. It is lookup for many ids at once: on big graphs each
// lookup is a cache miss on its slot and another on its id in the arena, and
// taken one at a time those misses are paid one after the other. Touching
// every id's slot first, then every candidate's arena bytes, lets the CPU
// have many misses in flight, so the final pass finds its data in cache.
//
// hashes is scratch space for one chunk's hashes. It comes from the caller
// (the pooled EdgeChunk) rather than the stack: a 4 KiB array there made
// every request's fresh handler goroutine grow its stack, about 4% of the
// server's CPU on karate-sized requests.
func (x *idIndex) lookupAll(ids []string, out []int32, hashes *[LookupChunk]uint64) bool {
	mask := len(x.slots) - 1
	var touched uint64
	for len(ids) > 0 {
		n := min(len(ids), LookupChunk)
		for i, id := range ids[:n] {
			h := maphash.String(x.seed, id)
			hashes[i] = h
			touched += x.slots[int(h)&mask]
		}
		for i := range n {
			if s := x.slots[int(hashes[i])&mask]; s != 0 {
				k := uint32(s) - 1
				if k > 0 {
					touched += uint64(x.arena[x.ends[k-1]:][0])
				}
			}
		}
		for i, id := range ids[:n] {
			k, ok := x.findHashed(id, hashes[i])
			if !ok {
				return false
			}
			out[i] = k
		}
		ids, out = ids[n:], out[n:]
	}
	x.touched = touched
	return true
}
