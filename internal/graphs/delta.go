package graphs

import (
	"unicode/utf8"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphcheck"
)

// Node is a node to upsert: its id and its F features.
type Node struct {
	ID       string
	Features []float32
}

// Edge is an edge between two node ids.
type Edge struct {
	Source, Target string
}

// Delta is one atomic change to a graph. Its parts apply in this order:
// RemoveEdges, RemoveNodes (with every link left at them), UpsertNodes (an
// existing id gets new features, a new id is a new node with no links),
// AddEdges (endpoints may be nodes upserted by the same delta). So a delta
// can remove a node and add it back fresh, and link new nodes.
type Delta struct {
	UpsertNodes []Node
	RemoveNodes []string
	AddEdges    []Edge
	// RemoveEdges removes one listing of each edge, in either direction.
	RemoveEdges []Edge
	// ExpectedRevision, when HasExpected, must be the graph's revision or
	// the delta is refused (Aborted) and nothing changes.
	ExpectedRevision uint64
	HasExpected      bool
	// IdempotencyKey, when not empty, makes the delta apply at most once:
	// a delta whose key is among the graph's recent keys is not applied
	// again; its answer is the revision it produced.
	IdempotencyKey string
}

// Limits bounds a graph after a delta. Zero means unlimited.
type Limits struct {
	MaxNodes int
	MaxEdges int64
}

// ChangeKind says what one Change did.
type ChangeKind uint8

// Change kinds.
const (
	EdgeAdded ChangeKind = iota + 1
	EdgeRemoved
	NodeAdded
	NodeRemoved
	FeaturesChanged
)

// Change is one effect of a delta on the graph's slots, in the order
// applied: what an incremental engine needs to update per-layer state. A
// removed node's links come as EdgeRemoved before its NodeRemoved; an
// upsert of an existing node is FeaturesChanged; self loops, which count
// for nothing in the model, make no Change. V is 0 for node changes.
type Change struct {
	Kind ChangeKind
	U, V int32
}

// Prepared is a validated delta, ready to Apply to the graph it was
// prepared on, provided nothing changed the graph in between.
type Prepared struct {
	d *Delta
	// Duplicate: the idempotency key was seen; Revision is its revision
	// and Apply changes nothing.
	Duplicate bool
	// Revision is the revision the graph has after Apply.
	Revision uint64
	// removeSlots are RemoveNodes' slots, removeEdges RemoveEdges' slot pairs.
	removeSlots []int32
	removeEdges [][2]int32
}

func invalidf(format string, args ...any) error {
	return gcnerr.New(gcnerr.InvalidArgument, format, args...)
}

// Prepare validates d against g without changing g: idempotency key, then
// expected revision, then every part in application order, with the
// messages ProcessGraph gives for nodes and edges ("node 3 ("n3"): 12
// features, model wants 34", "edge 17: target "n9" is not a node id"), then
// the limits. The first problem is the error.
func (g *Graph) Prepare(d *Delta, lim Limits) (*Prepared, error) {
	if d.IdempotencyKey != "" {
		if rev, ok := g.keys.get(d.IdempotencyKey); ok {
			return &Prepared{d: d, Duplicate: true, Revision: rev}, nil
		}
	}
	if d.HasExpected && d.ExpectedRevision != g.revision {
		return nil, gcnerr.New(gcnerr.Aborted, "expected revision %d, the graph is at revision %d", d.ExpectedRevision, g.revision)
	}
	p := &Prepared{d: d, Revision: g.revision + 1}

	// RemoveEdges: endpoints live now, and each pair listed at most as many
	// times as the graph has it.
	var wanted map[[2]int32]int
	if len(d.RemoveEdges) > 0 {
		wanted = make(map[[2]int32]int, len(d.RemoveEdges))
		p.removeEdges = make([][2]int32, len(d.RemoveEdges))
	}
	var removedLinks int64
	for j, e := range d.RemoveEdges {
		u, v, err := g.endpoints("remove_edges", j, e, nil, nil)
		if err != nil {
			return nil, err
		}
		key := [2]int32{min(u, v), max(u, v)}
		wanted[key]++
		if wanted[key] > g.multiplicity(u, v) {
			have := g.multiplicity(u, v)
			return nil, invalidf("remove_edges %d: no edge %s - %s left to remove (the graph lists it %d time%s)",
				j, graphcheck.QuoteID(e.Source), graphcheck.QuoteID(e.Target), have, plural(have))
		}
		p.removeEdges[j] = [2]int32{u, v}
		if u != v {
			removedLinks++
		}
	}

	// RemoveNodes: live, listed once.
	var removed map[int32]int
	if len(d.RemoveNodes) > 0 {
		removed = make(map[int32]int, len(d.RemoveNodes))
		p.removeSlots = make([]int32, len(d.RemoveNodes))
	}
	for i, id := range d.RemoveNodes {
		s, ok := g.index[id]
		if !ok {
			if id != "" && !utf8.ValidString(id) {
				return nil, invalidf("remove_nodes %d: id is not valid UTF-8", i)
			}
			return nil, invalidf("remove_nodes %d: %s is not a node id", i, graphcheck.QuoteID(id))
		}
		if k, dup := removed[s]; dup {
			return nil, invalidf("remove_nodes %d: duplicate id %s (also remove_nodes %d)", i, graphcheck.QuoteID(id), k)
		}
		removed[s] = i
		p.removeSlots[i] = s
	}

	// UpsertNodes: ProcessGraph's node checks, in its order.
	var upserted map[string]int
	if len(d.UpsertNodes) > 0 {
		upserted = make(map[string]int, len(d.UpsertNodes))
	}
	newNodes := 0
	for i, n := range d.UpsertNodes {
		if n.ID != "" && !utf8.ValidString(n.ID) {
			return nil, invalidf("node %d: id is not valid UTF-8", i)
		}
		if n.ID == "" {
			return nil, invalidf("node %d: empty id", i)
		}
		if j, dup := upserted[n.ID]; dup {
			return nil, invalidf("node %d: duplicate id %s (also node %d)", i, graphcheck.QuoteID(n.ID), j)
		}
		if len(n.Features) != g.featureDim {
			return nil, invalidf("node %d (%s): %d features, model wants %d", i, graphcheck.QuoteID(n.ID), len(n.Features), g.featureDim)
		}
		if k := graphcheck.FirstNonFinite(n.Features); k >= 0 {
			return nil, invalidf("node %d (%s): feature %d is %s", i, graphcheck.QuoteID(n.ID), k, graphcheck.NonFiniteName(n.Features[k]))
		}
		upserted[n.ID] = i
		if s, ok := g.index[n.ID]; !ok {
			newNodes++
		} else if _, gone := removed[s]; gone {
			newNodes++
		}
	}

	// AddEdges: endpoints live after the removals, or upserted.
	for j, e := range d.AddEdges {
		if _, _, err := g.endpoints("edge", j, e, removed, upserted); err != nil {
			return nil, err
		}
	}

	// Limits on the graph as it will be.
	nodesAfter := g.nodes - len(d.RemoveNodes) + newNodes
	if lim.MaxNodes > 0 && nodesAfter > lim.MaxNodes && nodesAfter > g.nodes {
		return nil, gcnerr.New(gcnerr.TooLarge, "graph would have %d nodes, limit is %d (--max-nodes)", nodesAfter, lim.MaxNodes)
	}
	if lim.MaxEdges > 0 && len(d.AddEdges) > 0 {
		edgesAfter := g.NumEdges() - int64(len(d.RemoveEdges)) - g.linksLost(removed, p.removeEdges, removedLinks) + int64(len(d.AddEdges))
		if edgesAfter > lim.MaxEdges && edgesAfter > g.NumEdges() {
			return nil, gcnerr.New(gcnerr.TooLarge, "graph would have %d edges, limit is %d (--max-edges)", edgesAfter, lim.MaxEdges)
		}
	}
	return p, nil
}

// linksLost counts the edge listings removing the nodes in removed takes
// away, after removeEdges are gone: their links (once each) and self loops.
func (g *Graph) linksLost(removed map[int32]int, removeEdges [][2]int32, removedLinks int64) int64 {
	if len(removed) == 0 {
		return 0
	}
	var n int64
	for r := range removed {
		n += int64(g.loops[r])
		for _, w := range g.adj[r] {
			if _, both := removed[w]; !both || r < w {
				n++
			}
		}
	}
	// Listings RemoveEdges takes first were counted above too.
	for _, e := range removeEdges {
		_, a := removed[e[0]]
		_, b := removed[e[1]]
		if a || b {
			n--
		}
	}
	return n
}

// endpoints resolves edge j of a part to slots. With removed and upserted
// (AddEdges), an endpoint must survive the removals or be upserted; the
// slot returned is then meaningless (Apply resolves again).
func (g *Graph) endpoints(part string, j int, e Edge, removed map[int32]int, upserted map[string]int) (u, v int32, err error) {
	resolve := func(id string) (int32, bool) {
		if _, ok := upserted[id]; ok {
			return -1, true
		}
		s, ok := g.index[id]
		if !ok {
			return 0, false
		}
		if _, gone := removed[s]; gone {
			return 0, false
		}
		return s, true
	}
	u, okU := resolve(e.Source)
	v, okV := resolve(e.Target)
	if okU && okV {
		return u, v, nil
	}
	if !okU && !utf8.ValidString(e.Source) {
		return 0, 0, invalidf("%s %d: source id is not valid UTF-8", part, j)
	}
	if !utf8.ValidString(e.Target) {
		return 0, 0, invalidf("%s %d: target id is not valid UTF-8", part, j)
	}
	if !okU {
		return 0, 0, invalidf("%s %d: source %s is not a node id", part, j, graphcheck.QuoteID(e.Source))
	}
	return 0, 0, invalidf("%s %d: target %s is not a node id", part, j, graphcheck.QuoteID(e.Target))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Apply applies a delta Prepare validated on g, g unchanged since, and
// returns its changes in order (nil for a duplicate). It cannot fail.
func (g *Graph) Apply(p *Prepared) []Change {
	if p.Duplicate {
		return nil
	}
	d := p.d
	var changes []Change
	for _, e := range p.removeEdges {
		u, v := e[0], e[1]
		if u == v {
			g.removeLoop(u)
			continue
		}
		g.unlinkOne(u, v)
		g.unlinkOne(v, u)
		g.links--
		changes = append(changes, Change{Kind: EdgeRemoved, U: u, V: v})
	}
	for _, r := range p.removeSlots {
		changes = g.removeNode(r, changes)
	}
	for _, n := range d.UpsertNodes {
		if s, ok := g.index[n.ID]; ok {
			copy(g.features[int(s)*g.featureDim:], n.Features)
			changes = append(changes, Change{Kind: FeaturesChanged, U: s})
			continue
		}
		// The graph keeps its own copy of the id: the delta's may alias a
		// request buffer.
		s := g.addSlot(string([]byte(n.ID)), n.Features)
		changes = append(changes, Change{Kind: NodeAdded, U: s})
	}
	if len(d.AddEdges) > 0 {
		ends := make([][2]int32, len(d.AddEdges))
		for j, e := range d.AddEdges {
			ends[j] = [2]int32{g.index[e.Source], g.index[e.Target]}
		}
		g.reserve(ends)
		for _, e := range ends {
			g.link(e[0], e[1])
			if e[0] != e[1] {
				changes = append(changes, Change{Kind: EdgeAdded, U: e[0], V: e[1]})
			}
		}
	}
	g.revision = p.Revision
	if d.IdempotencyKey != "" {
		g.keys.add(string([]byte(d.IdempotencyKey)), g.revision)
	}
	return changes
}

func (g *Graph) removeLoop(u int32) {
	if g.loops[u]--; g.loops[u] == 0 {
		delete(g.loops, u)
	}
	g.selfLoops--
}

// removeNode removes slot r's links (EdgeRemoved each), self loops and the
// node (NodeRemoved), and frees the slot.
func (g *Graph) removeNode(r int32, changes []Change) []Change {
	for _, w := range g.adj[r] {
		g.unlinkOne(w, r)
		g.links--
		changes = append(changes, Change{Kind: EdgeRemoved, U: r, V: w})
	}
	g.adjCap -= int64(cap(g.adj[r]))
	g.adj[r] = nil
	if n := g.loops[r]; n > 0 {
		g.selfLoops -= int64(n)
		delete(g.loops, r)
	}
	id := g.ids[r]
	delete(g.index, id)
	g.idBytes -= int64(len(id))
	g.ids[r] = ""
	clear(g.features[int(r)*g.featureDim : (int(r)+1)*g.featureDim])
	g.free = append(g.free, r)
	g.nodes--
	return append(changes, Change{Kind: NodeRemoved, U: r})
}

// reserve grows the adjacency lists the links in ends will extend to their
// exact new length. A big batch (a load) gets one backing array for every
// list it grows: no per-node allocation, no append slack.
func (g *Graph) reserve(ends [][2]int32) {
	add := make(map[int32]int32)
	for _, e := range ends {
		if e[0] != e[1] {
			add[e[0]]++
			add[e[1]]++
		}
	}
	var total int
	for s, n := range add {
		if need := len(g.adj[s]) + int(n); need > cap(g.adj[s]) {
			total += need
		} else {
			delete(add, s)
		}
	}
	if total == 0 {
		return
	}
	backing := make([]int32, 0, total)
	for s, n := range add {
		a := g.adj[s]
		need := len(a) + int(n)
		off := len(backing)
		backing = append(backing, a...)
		g.adjCap += int64(need - cap(a))
		g.adj[s] = backing[off : off+len(a) : off+need]
		backing = backing[:off+need]
	}
}
