// Package graphs keeps graphs that live in the server: string node ids
// mapped to stable int32 slots, per-node adjacency lists, features, a
// revision counter and the idempotency keys of recent deltas. It is pure Go:
// no transport, no ONNX Runtime (scoring goes through a Scorer), no disk
// (internal/graphs/store makes it durable).
//
// Graph semantics are the model contract's (gcn.Aggregation): each listed
// edge u != v is one undirected link, recorded in both nodes' adjacency
// lists; a link listed twice counts twice (multigraph); a listed self loop
// counts for nothing in the model, so it is kept only as a per-node count,
// which lets an export give back what was loaded.
//
// A Graph is not safe for concurrent use: its owner (internal/serving)
// guards it with a lock, writes under the write lock, reads (Extract,
// Export) under the read lock.
package graphs

// Graph is one stored graph. Slots are int32 node numbers; a removed node's
// slot goes on a free list and is reused by a later new node.
type Graph struct {
	// featureDim is F: every node has exactly F finite features.
	featureDim int
	// ids[s] is slot s's node id, "" for a free slot.
	ids []string
	// index maps a live node id to its slot.
	index map[string]int32
	// adj[s] lists slot s's neighbours, one entry per listed link (u != v),
	// so a link is in both ends' lists and a duplicate link twice in each.
	adj [][]int32
	// loops counts the self loops listed at a slot (sparse: most have none).
	loops map[int32]int32
	// features is slot-major: slot s's features are features[s*F:(s+1)*F].
	features []float32
	// free holds free slots, reused last-in first-out.
	free []int32

	nodes     int
	links     int64 // listed links u != v
	selfLoops int64
	// idBytes is the sum of live ids' lengths; adjCap the sum of cap(adj[s]).
	idBytes, adjCap int64

	revision uint64
	keys     *keyLRU
}

// New returns an empty graph whose nodes have featureDim features, at
// revision 0.
func New(featureDim int) *Graph {
	return &Graph{
		featureDim: featureDim,
		index:      map[string]int32{},
		loops:      map[int32]int32{},
		keys:       newKeyLRU(DefaultIdempotencyKeys),
	}
}

// FeatureDim is F.
func (g *Graph) FeatureDim() int { return g.featureDim }

// NumSlots is one more than the highest slot ever used: slots are in
// [0, NumSlots()), live or free.
func (g *Graph) NumSlots() int { return len(g.ids) }

// Live reports whether slot i holds a node.
func (g *Graph) Live(i int32) bool { return int(i) < len(g.ids) && i >= 0 && g.ids[i] != "" }

// Neighbors returns slot i's adjacency list (one entry per listed link, self
// loops excluded). The caller must not modify it or keep it past the next
// change.
func (g *Graph) Neighbors(i int32) []int32 { return g.adj[i] }

// Features returns slot i's F features. The caller must not modify them.
func (g *Graph) Features(i int32) []float32 {
	f := g.featureDim
	return g.features[int(i)*f : (int(i)+1)*f : (int(i)+1)*f]
}

// ID returns slot i's node id ("" for a free slot).
func (g *Graph) ID(i int32) string { return g.ids[i] }

// Slot returns the slot of node id.
func (g *Graph) Slot(id string) (int32, bool) {
	s, ok := g.index[id]
	return s, ok
}

// SelfLoops returns how many self loops are listed at slot i.
func (g *Graph) SelfLoops(i int32) int { return int(g.loops[i]) }

// NumNodes is the number of live nodes.
func (g *Graph) NumNodes() int { return g.nodes }

// NumEdges is the number of listed edges, self loops included (what an
// export lists).
func (g *Graph) NumEdges() int64 { return g.links + g.selfLoops }

// Revision is the graph's revision: 0 when empty and new, one more after
// each applied delta (the initial load is a delta).
func (g *Graph) Revision() uint64 { return g.revision }

// Per-item sizes of Bytes' estimate on 64-bit Go, measured by
// TestBytesEstimate against runtime.MemStats.
const (
	// bytesPerSlot: the id's string header (16), the adjacency slice header
	// (24) and the index map's share per entry (key header 16 + value 4 +
	// tophash and load-factor slack, about 28).
	bytesPerSlot = 16 + 24 + 48
	// bytesPerAdjEntry: one int32 per end of a link.
	bytesPerAdjEntry = 4
)

// Bytes estimates the memory the graph holds: per slot
// bytesPerSlot + 4F + the id's bytes (counted twice: the ids slice and the
// index key share the string, but map growth keeps old buckets until
// evacuated), plus 4 bytes per adjacency entry of capacity (each link has
// one at both ends).
func (g *Graph) Bytes() int64 {
	slots := int64(len(g.ids))
	return slots*(bytesPerSlot+4*int64(g.featureDim)) + g.idBytes + bytesPerAdjEntry*g.adjCap +
		int64(len(g.loops))*16 + int64(cap(g.free))*4 + g.keys.bytes()
}

// addSlot puts id in a slot (a free one if any) with features and no links.
func (g *Graph) addSlot(id string, features []float32) int32 {
	var s int32
	if n := len(g.free); n > 0 {
		s = g.free[n-1]
		g.free = g.free[:n-1]
		g.ids[s] = id
		copy(g.features[int(s)*g.featureDim:], features[:g.featureDim])
	} else {
		s = int32(len(g.ids))
		g.ids = append(g.ids, id)
		g.adj = append(g.adj, nil)
		g.features = append(g.features, features[:g.featureDim]...)
	}
	g.index[id] = s
	g.nodes++
	g.idBytes += int64(len(id))
	return s
}

// link records one listed edge between slots u and v.
func (g *Graph) link(u, v int32) {
	if u == v {
		g.loops[u]++
		g.selfLoops++
		return
	}
	g.appendAdj(u, v)
	g.appendAdj(v, u)
	g.links++
}

func (g *Graph) appendAdj(u, v int32) {
	before := cap(g.adj[u])
	g.adj[u] = append(g.adj[u], v)
	g.adjCap += int64(cap(g.adj[u]) - before)
}

// unlinkOne removes one listing of v from u's list (it must be there).
func (g *Graph) unlinkOne(u, v int32) {
	a := g.adj[u]
	for k, w := range a {
		if w == v {
			a[k] = a[len(a)-1]
			g.adj[u] = a[:len(a)-1]
			return
		}
	}
	panic("graphs: unlinkOne of a missing link")
}

// multiplicity counts the listings of link (u, v) (self loops: the count).
func (g *Graph) multiplicity(u, v int32) int {
	if u == v {
		return int(g.loops[u])
	}
	a, b := g.adj[u], v
	if len(g.adj[v]) < len(a) {
		a, b = g.adj[v], u
	}
	n := 0
	for _, w := range a {
		if w == b {
			n++
		}
	}
	return n
}
