package graphcheck

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"unsafe"
)

// idIndex maps node ids to node indexes. It replaces map[string]int32 on
// the hot path because, on big graphs, resolving edge endpoints is where
// decoding spends its time, nearly all of it waiting for memory: a Go map
// (or a table of hashes pointing at the ids) touches its slot and then, to
// compare keys, the id somewhere else in memory. Here a slot is 16 bytes
// holding an id of up to 8 bytes whole (most ids: "n12345", "paper_42"), its
// length, 23 bits of its hash and its node index, so a lookup of a short id
// is one memory access; a longer id is copied into a compact arena, its slot
// says where, and it is compared in full only when its length and the hash
// bits match.
//
// The table is open-addressed with linear probing, at most 60% full, sized
// once from the node count (no growth). Short ids are hashed by one
// 64x64->128-bit multiply of the id's bytes with a random per-index seed
// (wyhash's mixing step), longer ones with hash/maphash: both are keyed per
// request, so a client cannot choose ids that collide.
//
// Nodes are inserted in index order 0, 1, 2, ... by one goroutine; once
// they are all in, any number of goroutines may look ids up concurrently.
type idIndex struct {
	seed0, seed1 uint64
	seed         maphash.Seed // for ids longer than 8 bytes
	// slots has size+1 entries: the table, then one that stays empty.
	slots []idSlot
	// ids holds node i's id at index i (the Graph's IDs).
	ids []string
	// arena holds a copy of every long id, back to back: comparing a
	// lookup with a compact copy is one cache miss, where reaching the
	// node's id through ids is two (its header, then its bytes somewhere in
	// the request).
	arena []byte
	// size is len(slots), kept as a uint64 for the slot computation.
	size uint64
	// touched keeps touch's loads from being optimized away. Atomic:
	// several goroutines resolve edges at once.
	touched atomic.Uint64
}

// idSlot is one slot of idIndex: key is the id's bytes (short ids, as
// shortKey packs them) or where the arena holds it (long ids); meta is
// tag<<32 | index+1, 0 for an empty slot, where tag (idTag) holds 23 bits
// of the hash and the id's length (capped at 255).
type idSlot struct {
	key, meta uint64
}

// maxShortID is the longest id a slot holds whole.
const maxShortID = 8

func newIDIndex(ids []string) *idIndex { return newIDIndexIn(ids, nil) }

// newIDIndexIn is newIDIndex with its slots in *slots when not nil
// (grown when short, emptied: the index then lives in *slots until the
// next use).
func newIDIndexIn(ids []string, slots *[]idSlot) *idIndex {
	size := len(ids) + len(ids)*2/3 + 8 // at most 60% full
	// One more slot than the table's size, always empty, so that
	// lookupAll can read a home slot's successor without a bounds test.
	var table []idSlot
	if slots == nil || cap(*slots) < size+1 {
		table = make([]idSlot, size+1)
		if slots != nil {
			*slots = table
		}
	} else {
		table = (*slots)[:size+1]
		clear(table)
	}
	return &idIndex{
		seed0: rand.Uint64(),
		seed1: rand.Uint64(),
		seed:  maphash.MakeSeed(),
		slots: table,
		ids:   ids,
		size:  uint64(size),
	}
}

// hash returns id's slot key and hash.
func (x *idIndex) hash(id string) (key, h uint64) {
	n := len(id)
	if n > maxShortID {
		return 0, maphash.String(x.seed, id) // the key is not compared
	}
	key = shortKey(id)
	hi, lo := bits.Mul64(key^x.seed0, uint64(n)^x.seed1)
	return key, hi ^ lo
}

// shortKey packs an id of at most 8 bytes into a uint64 such that two ids
// of the same length have the same key exactly when they are equal. It
// reads only the id's own bytes (the id may end at the end of a buffer):
// two overlapping 4-byte loads for 4 to 7 bytes, and the first, middle and
// last byte for 1 to 3 (wyhash's trick).
func shortKey(id string) uint64 {
	n := len(id)
	p := unsafe.StringData(id)
	switch {
	case n == 8:
		return load64(id)
	case n >= 4:
		lo := binary.LittleEndian.Uint32(unsafe.Slice(p, 4))
		hi := binary.LittleEndian.Uint32(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(p), n-4)), 4))
		return uint64(lo) | uint64(hi)<<32
	case n > 0:
		return uint64(id[0]) | uint64(id[n>>1])<<8 | uint64(id[n-1])<<16
	}
	return 0
}

// load64 returns the first 8 bytes of id (len(id) >= 8), little-endian.
func load64(id string) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(id), 8))
}

// idTag is what a slot's meta holds besides the index: 23 bits of h, a
// bit that is always set and the id's length, capped at 255 (exact for
// short ids, which is what makes key and tag identify a short id). The set
// bit keeps a tag from being 0, an empty slot's: lookupAll compares tags
// without asking whether a slot is empty, and an empty id (key 0) whose
// hash bits were 0 would otherwise match one.
func idTag(h uint64, n int) uint64 {
	return uint64(uint32(h)&0xfffffe00 | 0x100 | uint32(min(n, 255)))
}

// home is the first slot of h's probe sequence: the high bits of h scaled
// to the table size.
func (x *idIndex) home(h uint64) int {
	i, _ := bits.Mul64(h, x.size)
	return int(i)
}

// probe walks the probe sequence of id (whose key and hash are key and h)
// and returns its node index, or the empty slot where it would go.
func (x *idIndex) probe(id string, key, h uint64) (slot int, index int32, found bool) {
	tag := idTag(h, len(id))
	i := x.home(h)
	for {
		s := &x.slots[i]
		if s.meta == 0 {
			return i, 0, false
		}
		if s.meta>>32 == tag {
			k := int32(uint32(s.meta)) - 1
			if len(id) <= maxShortID {
				if s.key == key {
					return i, k, true
				}
			} else if x.longEqual(s.key, k, id) {
				return i, k, true
			}
		}
		if i++; i == int(x.size) {
			i = 0
		}
	}
}

// lookup returns id's node index.
func (x *idIndex) lookup(id string) (int32, bool) {
	key, h := x.hash(id)
	_, k, ok := x.probe(id, key, h)
	return k, ok
}

// insert adds node i, whose id is x.ids[i], unless an earlier node has the
// same id: then it returns that node's index and true.
func (x *idIndex) insert(i int, key, h uint64) (int32, bool) {
	id := x.ids[i]
	slot, k, dup := x.probe(id, key, h)
	if dup {
		return k, true
	}
	x.put(slot, i, key, h)
	return 0, false
}

// put stores node i, whose id has key and hash h and is x.ids[i], in the
// empty slot probe returned for it.
func (x *idIndex) put(slot, i int, key, h uint64) {
	id := x.ids[i]
	if len(id) > maxShortID {
		if x.arena == nil {
			x.arena = make([]byte, 0, 16*len(x.ids)) // grows if ids are longer
		}
		key = uint64(len(x.arena)) | uint64(min(len(id), maxArenaLen))<<arenaOffsetBits
		x.arena = append(x.arena, id...)
	}
	x.slots[slot] = idSlot{key: key, meta: idTag(h, len(id))<<32 | uint64(uint32(i)+1)}
}

// A long id's slot key locates its copy in the arena: the low
// arenaOffsetBits bits are its offset, the rest its length, or
// maxArenaLen for a length that does not fit (compared through ids then).
const (
	arenaOffsetBits = 40
	maxArenaLen     = 1<<(64-arenaOffsetBits) - 1
)

// longEqual reports whether the long id in the slot with key key, node k,
// is id.
func (x *idIndex) longEqual(key uint64, k int32, id string) bool {
	n := int(key >> arenaOffsetBits)
	if n == maxArenaLen {
		return x.ids[k] == id
	}
	if n != len(id) {
		return false
	}
	off := int(key & (1<<arenaOffsetBits - 1))
	return string(x.arena[off:off+n]) == id
}

// LookupChunk is how many edges a chunk resolves together.
const LookupChunk = 256

// lookupAll resolves every id into out (same length) and returns the index
// of the first id that is not a node id, or -1. keys and hashes are scratch
// of the same length, pending too.
//
// On big graphs each lookup is a cache miss on its slot, and a probe loop
// pays them one after the other: whether the first slot holds the id is a
// branch the CPU cannot predict, and after a wrong guess it issues the next
// lookup's load only once this one's has arrived. So lookupAll hashes every
// id first, then reads every id's first two slots in a loop with no branch
// on what it reads (many misses in flight at once), settling the short ids
// found there; only the rest (an id further along its probe sequence, a
// long id, an absent one) are probed, their slots now in cache.
func (x *idIndex) lookupAll(ids []string, out []int32, keys, hashes []uint64, pending []int32) int {
	keys, hashes, out = keys[:len(ids)], hashes[:len(ids)], out[:len(ids)]
	for k, id := range ids {
		keys[k], hashes[k] = x.hash(id)
	}
	n := 0
	for k, id := range ids {
		// The home slot and the next: at 60% full, linear probing puts
		// about a third of the ids one slot past home, nearly always in
		// the same cache line.
		i := x.home(hashes[k])
		s0, s1 := x.slots[i], x.slots[i+1]
		tag := idTag(hashes[k], len(id))
		m0 := b2i(s0.key == keys[k]) & b2i(s0.meta>>32 == tag)
		m1 := b2i(s1.key == keys[k]) & b2i(s1.meta>>32 == tag)
		meta := s1.meta
		if m0 != 0 {
			meta = s0.meta
		}
		out[k] = int32(uint32(meta)) - 1
		pending[n] = int32(k)
		n += 1 - (m0|m1)&b2i(len(id) <= maxShortID)
	}
	for _, k := range pending[:n] {
		_, idx, ok := x.probe(ids[k], keys[k], hashes[k])
		if !ok {
			// The first id not found: every id before it was, on
			// either pass.
			return int(k)
		}
		out[k] = idx
	}
	return -1
}

// b2i is 1 for true, 0 for false; the compiler makes it a flag move, not a
// branch.
func b2i(b bool) int {
	var i int
	if b {
		i = 1
	}
	return i
}

// touch loads the first slot of every hash in hashes, so that the probes
// that follow find them in cache (see lookupAll).
func (x *idIndex) touch(hashes []uint64) {
	var sum uint64
	for _, h := range hashes {
		sum += x.slots[x.home(h)].meta
	}
	x.touched.Store(sum)
}
