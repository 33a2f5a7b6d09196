package graphs

import "fmt"

// ExportNodes calls f with the live nodes in slot order, in batches of at
// most batch nodes; ids and features alias the graph (copy what you keep).
// It stops at f's first error.
func (g *Graph) ExportNodes(batch int, f func([]Node) error) error {
	buf := make([]Node, 0, batch)
	for s, id := range g.ids {
		if id == "" {
			continue
		}
		buf = append(buf, Node{ID: id, Features: g.Features(int32(s))})
		if len(buf) == batch {
			if err := f(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		return f(buf)
	}
	return nil
}

// ExportEdges calls f with every listed edge, in batches of at most batch:
// each link once (from its lower slot), then each self loop as often as it
// was listed. Loading them back gives the same graph up to slot numbers
// and list order.
func (g *Graph) ExportEdges(batch int, f func([]Edge) error) error {
	buf := make([]Edge, 0, batch)
	emit := func(e Edge) error {
		buf = append(buf, e)
		if len(buf) == batch {
			err := f(buf)
			buf = buf[:0]
			return err
		}
		return nil
	}
	for s, id := range g.ids {
		if id == "" {
			continue
		}
		for _, w := range g.adj[s] {
			if int32(s) < w {
				if err := emit(Edge{Source: id, Target: g.ids[w]}); err != nil {
					return err
				}
			}
		}
		for n := g.loops[int32(s)]; n > 0; n-- {
			if err := emit(Edge{Source: id, Target: id}); err != nil {
				return err
			}
		}
	}
	if len(buf) > 0 {
		return f(buf)
	}
	return nil
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
	buf := make([]Node, 0, batch)
	for s := range slots {
		id := dec.str()
		if dec.err != nil {
			return dec.err
		}
		if id == "" {
			continue
		}
		ids[s] = id
		k := len(buf)
		row := feats[k*f : (k+1)*f : (k+1)*f]
		dec.floats(row)
		buf = append(buf, Node{ID: id, Features: row})
		adjAt[s] = len(snap) - len(dec.b)
		dec.uvarint()
		n := dec.count(1)
		for range n {
			dec.uvarint()
		}
		if dec.err != nil {
			return dec.err
		}
		if len(buf) == batch {
			if err := nodes(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		if err := nodes(buf); err != nil {
			return err
		}
	}
	// Pass 2: the edges, in ExportEdges' order.
	ebuf := make([]Edge, 0, batch)
	emit := func(e Edge) error {
		ebuf = append(ebuf, e)
		if len(ebuf) == batch {
			err := edges(ebuf)
			ebuf = ebuf[:0]
			return err
		}
		return nil
	}
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
				if err := emit(Edge{Source: id, Target: ids[w]}); err != nil {
					return err
				}
			}
		}
		for ; loops > 0; loops-- {
			if err := emit(Edge{Source: id, Target: id}); err != nil {
				return err
			}
		}
	}
	if len(ebuf) > 0 {
		return edges(ebuf)
	}
	return nil
}
