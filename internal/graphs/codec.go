package graphs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The binary forms of a delta and of a whole graph (a snapshot), as the
// store keeps them. Little-endian; lengths and counts are uvarints; float32
// features are raw IEEE 754 bits. Each form starts with a format byte so a
// later layout can be told apart.
const (
	deltaFormat    = 1
	snapshotFormat = 1
)

// errCorrupt reports a record the codec cannot read.
var errCorrupt = errors.New("graphs: corrupt record")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) floats(f []float32) {
	for _, x := range f {
		e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(x))
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	// Only the shortest form, the one the encoder writes: a record reads
	// back to exactly one byte string, so damage cannot hide in padding.
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items of at least minSize bytes each, refusing one
// the remaining bytes cannot hold (a corrupt count must not allocate).
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/max(minSize, 1)) {
		d.err = errCorrupt
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) floats(dst []float32) {
	if d.err != nil {
		return
	}
	if len(d.b) < 4*len(dst) {
		d.err = errCorrupt
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.b[4*i:]))
	}
	d.b = d.b[4*len(dst):]
}

// EncodeDelta returns d's binary form (featureDim features per upserted
// node).
func EncodeDelta(d *Delta) []byte {
	e := &encoder{b: []byte{deltaFormat}}
	e.uvarint(uint64(len(d.UpsertNodes)))
	for _, n := range d.UpsertNodes {
		e.str(n.ID)
		e.uvarint(uint64(len(n.Features)))
		e.floats(n.Features)
	}
	e.uvarint(uint64(len(d.RemoveNodes)))
	for _, id := range d.RemoveNodes {
		e.str(id)
	}
	for _, es := range [][]Edge{d.AddEdges, d.RemoveEdges} {
		e.uvarint(uint64(len(es)))
		for _, x := range es {
			e.str(x.Source)
			e.str(x.Target)
		}
	}
	e.str(d.IdempotencyKey)
	return e.b
}

// DecodeDelta reads EncodeDelta's form. Expected revisions are not kept: a
// stored delta was already checked.
func DecodeDelta(b []byte) (*Delta, error) {
	if len(b) == 0 || b[0] != deltaFormat {
		return nil, fmt.Errorf("%w: delta format", errCorrupt)
	}
	dec := &decoder{b: b[1:]}
	d := &Delta{}
	d.UpsertNodes = make([]Node, dec.count(2))
	for i := range d.UpsertNodes {
		d.UpsertNodes[i].ID = dec.str()
		f := make([]float32, dec.count(4))
		dec.floats(f)
		d.UpsertNodes[i].Features = f
	}
	d.RemoveNodes = make([]string, dec.count(1))
	for i := range d.RemoveNodes {
		d.RemoveNodes[i] = dec.str()
	}
	for _, es := range []*[]Edge{&d.AddEdges, &d.RemoveEdges} {
		*es = make([]Edge, dec.count(2))
		for j := range *es {
			(*es)[j] = Edge{Source: dec.str(), Target: dec.str()}
		}
	}
	d.IdempotencyKey = dec.str()
	if dec.err == nil && len(dec.b) != 0 {
		dec.err = errCorrupt
	}
	return d, dec.err
}

// AppendSnapshot appends g's binary form to b: feature dimension, revision,
// every slot (id, or "" for a free slot; features; adjacency list; self
// loops), the free list and the idempotency keys oldest first. Slots keep
// their numbers, so a delta log replayed on the snapshot gives the slots
// the original run gave.
func (g *Graph) AppendSnapshot(b []byte) []byte {
	e := &encoder{b: append(b, snapshotFormat)}
	e.uvarint(uint64(g.featureDim))
	e.uvarint(g.revision)
	e.uvarint(uint64(len(g.ids)))
	for s, id := range g.ids {
		e.str(id)
		if id == "" {
			continue
		}
		e.floats(g.Features(int32(s)))
		e.uvarint(uint64(g.loops[int32(s)]))
		e.uvarint(uint64(len(g.adj[s])))
		for _, w := range g.adj[s] {
			e.uvarint(uint64(w))
		}
	}
	e.uvarint(uint64(len(g.free)))
	for _, s := range g.free {
		e.uvarint(uint64(s))
	}
	e.uvarint(uint64(g.keys.len()))
	g.keys.each(func(k string, rev uint64) {
		e.str(k)
		e.uvarint(rev)
	})
	return e.b
}

// SnapshotSize is about the size of g's snapshot, for sizing buffers.
func (g *Graph) SnapshotSize() int {
	return 32 + len(g.ids)*(4+4*g.featureDim) + int(g.idBytes) + int(g.links)*2*3
}

// ReadSnapshot rebuilds the graph AppendSnapshot wrote. Adjacency lists
// share one backing array, each list exactly its length.
func ReadSnapshot(b []byte) (*Graph, error) {
	if len(b) == 0 || b[0] != snapshotFormat {
		return nil, fmt.Errorf("%w: snapshot format", errCorrupt)
	}
	dec := &decoder{b: b[1:]}
	f := int(dec.uvarint())
	if dec.err != nil || f > len(dec.b) {
		return nil, errCorrupt
	}
	g := New(f)
	g.revision = dec.uvarint()
	slots := dec.count(1)
	g.ids = make([]string, slots)
	g.adj = make([][]int32, slots)
	g.features = make([]float32, slots*f)
	// Lists are read into one growing backing array, then cut.
	var backing []int32
	ends := make([]int, slots+1)
	for s := range slots {
		ends[s] = len(backing)
		id := dec.str()
		if dec.err != nil {
			return nil, dec.err
		}
		if id == "" {
			continue
		}
		g.ids[s] = id
		g.index[id] = int32(s)
		g.nodes++
		g.idBytes += int64(len(id))
		dec.floats(g.features[s*f : (s+1)*f])
		if n := dec.uvarint(); n > 0 {
			g.loops[int32(s)] = int32(n)
			g.selfLoops += int64(n)
		}
		n := dec.count(1)
		for range n {
			w := dec.uvarint()
			if w >= uint64(slots) {
				dec.err = errCorrupt
			}
			backing = append(backing, int32(w))
		}
		g.links += int64(n)
	}
	ends[slots] = len(backing)
	backing = backing[:len(backing):len(backing)]
	for s := range slots {
		g.adj[s] = backing[ends[s]:ends[s+1]:ends[s+1]]
	}
	g.adjCap = int64(len(backing))
	g.links /= 2
	g.free = make([]int32, dec.count(1))
	for i := range g.free {
		s := dec.uvarint()
		if s >= uint64(slots) || g.ids[s] != "" {
			dec.err = errCorrupt // a free slot must be a free slot
			break
		}
		g.free[i] = int32(s)
	}
	keys := dec.count(2)
	for range keys {
		k := dec.str()
		g.keys.add(k, dec.uvarint())
	}
	if dec.err == nil && len(dec.b) != 0 {
		dec.err = errCorrupt
	}
	if dec.err != nil {
		return nil, dec.err
	}
	return g, nil
}
