package graphs

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
