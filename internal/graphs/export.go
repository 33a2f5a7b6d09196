package graphs

import "fmt"

// ExportNodes calls f with the live nodes in slot order, in batches of at
// most batch nodes; ids and features alias the graph (copy what you keep).
// It stops at f's first error.
func (g *Graph) ExportNodes(batch int, f func([]Node) error) error {
	b := newBatcher(batch, f)
	for s, id := range g.ids {
		if id == "" {
			continue
		}
		if err := b.add(Node{ID: id, Features: g.Features(int32(s))}); err != nil {
			return err
		}
	}
	return b.flush()
}

// ExportEdges calls f with every listed edge, in batches of at most batch:
// each link once (from its lower slot), then each self loop as often as it
// was listed. Loading them back gives the same graph up to slot numbers
// and list order.
func (g *Graph) ExportEdges(batch int, f func([]Edge) error) error {
	b := newBatcher(batch, f)
	for s, id := range g.ids {
		if id == "" {
			continue
		}
		for _, w := range g.adj[s] {
			if int32(s) < w {
				if err := b.add(Edge{Source: id, Target: g.ids[w]}); err != nil {
					return err
				}
			}
		}
		for n := g.loops[int32(s)]; n > 0; n-- {
			if err := b.add(Edge{Source: id, Target: id}); err != nil {
				return err
			}
		}
	}
	return b.flush()
}

// ExportSnapshot is ExportNodes then ExportEdges on the graph whose
// snapshot (AppendSnapshot) is snap, reading the snapshot instead of a
// Graph: a graph's owner encodes the snapshot under its lock, lets go of
// the lock, and streams the export to a slow client without holding the
// graph or building a second one. Batches alias a buffer reused between
// calls (copy what you keep). A snapshot that does not read back is an
// error.
func ExportSnapshot(snap []byte, batch int, nodes func([]Node) error, edges func([]Edge) error) error {
	if len(snap) == 0 || snap[0] != snapshotFormat {
		return fmt.Errorf("%w: snapshot format", errCorrupt)
	}
	dec := &decoder{b: snap[1:]}
	f := int(dec.uvarint())
	if dec.err != nil || f > len(dec.b) {
		return errCorrupt
	}
	dec.uvarint() // revision
	slots := dec.count(1)
	if dec.err != nil {
		return dec.err
	}
	// Pass 1: the nodes; remember each slot's id and where its adjacency
	// list starts.
	ids := make([]string, slots)
	adjAt := make([]int, slots) // offset in snap of the slot's self-loop count
	feats := make([]float32, batch*f)
	nb := newBatcher(batch, nodes)
	for s := range slots {
		id := dec.str()
		if dec.err != nil {
			return dec.err
		}
		if id == "" {
			continue
		}
		ids[s] = id
		k := len(nb.buf)
		row := feats[k*f : (k+1)*f : (k+1)*f]
		dec.floats(row)
		adjAt[s] = len(snap) - len(dec.b)
		dec.uvarint()
		n := dec.count(1)
		for range n {
			dec.uvarint()
		}
		if dec.err != nil {
			return dec.err
		}
		if err := nb.add(Node{ID: id, Features: row}); err != nil {
			return err
		}
	}
	if err := nb.flush(); err != nil {
		return err
	}
	// Pass 2: the edges, in ExportEdges' order.
	eb := newBatcher(batch, edges)
	for s, id := range ids {
		if id == "" {
			continue
		}
		d := &decoder{b: snap[adjAt[s]:]}
		loops := d.uvarint()
		n := d.count(1)
		for range n {
			w := d.uvarint()
			if d.err == nil && (w >= uint64(slots) || ids[w] == "") {
				d.err = errCorrupt
			}
			if d.err != nil {
				return d.err
			}
			if uint64(s) < w {
				if err := eb.add(Edge{Source: id, Target: ids[w]}); err != nil {
					return err
				}
			}
		}
		for ; loops > 0; loops-- {
			if err := eb.add(Edge{Source: id, Target: id}); err != nil {
				return err
			}
		}
	}
	return eb.flush()
}

// batcher hands what is added to f in batches of n (the last one shorter),
// reusing one buffer: f must copy what it keeps.
type batcher[T any] struct {
	buf []T
	n   int
	f   func([]T) error
}

func newBatcher[T any](n int, f func([]T) error) *batcher[T] {
	return &batcher[T]{buf: make([]T, 0, n), n: n, f: f}
}

// add appends v and hands a full batch to f, returning f's error.
func (b *batcher[T]) add(v T) error {
	b.buf = append(b.buf, v)
	if len(b.buf) < b.n {
		return nil
	}
	err := b.f(b.buf)
	b.buf = b.buf[:0]
	return err
}

// flush hands what is left, if anything, to f.
func (b *batcher[T]) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	return b.f(b.buf)
}
