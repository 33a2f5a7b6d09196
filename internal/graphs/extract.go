package graphs

import "sync"

// Subgraph is what a model with a receptive field of k hops needs to score
// some nodes of a graph exactly, in the model's input form.
//
// Which nodes and edges, for GCN's a[d] = dinv[d] (dinv[d] h[d] +
// sum_s dinv[s] h[s]) (mean and sum read less): the output at an asked node
// (layer k, distance 0) reads layer k-1 values and dinv within 1 hop; layer
// j at distance i reads layer j-1 and dinv within distance i+1. So features
// are read within k hops, and degrees within k hops (computing layer 1 at
// distance k-1). A degree counts every link of the node, so every link of
// every node within k hops must be in the subgraph, and with it its other
// end, up to k+1 hops away. The (k+1)-hop nodes are there only to make their
// neighbours' degrees right; their own degrees (missing their other links)
// and values are never read. The graph induced on the k-hop nodes is not
// enough (the k-hop nodes would lose links, so degrees), and links between
// two (k+1)-hop nodes are not needed. TestExtractExact checks this against
// the whole graph, and that the induced k-hop graph is wrong.
type Subgraph struct {
	// Slots maps each subgraph node index to its graph slot; the asked
	// nodes come first, deduplicated, in the order first asked.
	Slots []int32
	// Rows[i] is the subgraph node index of the i-th asked node.
	Rows []int32
	// Features is [len(Slots), F] row-major.
	Features []float32
	// EdgeIndex is [2, E] row-major: E sources then E targets, each link
	// once.
	EdgeIndex []int64
}

// NumNodes is the subgraph's node count.
func (s *Subgraph) NumNodes() int { return len(s.Slots) }

// NumEdges is the subgraph's edge count.
func (s *Subgraph) NumEdges() int { return len(s.EdgeIndex) / 2 }

// Extract returns the subgraph that scores the live slots nodes exactly with
// a model of receptive field hops (see Subgraph): every node within hops+1
// of them, every link of every node within hops. It only reads g.
func (g *Graph) Extract(nodes []int32, hops int) *Subgraph {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.reset(len(g.ids))
	sub := &Subgraph{Rows: make([]int32, len(nodes)), Slots: make([]int32, 0, len(nodes)*16)}
	add := func(s int32) int32 {
		if i, ok := sc.get(s); ok {
			return i
		}
		i := int32(len(sub.Slots))
		sc.set(s, i)
		sub.Slots = append(sub.Slots, s)
		return i
	}
	for i, s := range nodes {
		sub.Rows[i] = add(s)
	}
	// Breadth-first, level by level: after expanding level h, Slots[:inner]
	// are the nodes within h hops and Slots[inner:] those at h+1.
	levelStart, inner := 0, len(sub.Slots)
	for h := 0; h < hops; h++ {
		for _, s := range sub.Slots[levelStart:inner] {
			for _, w := range g.adj[s] {
				add(w)
			}
		}
		levelStart, inner = inner, len(sub.Slots)
	}
	// Every link of the nodes within hops; the far ends join as they come.
	var links int
	for _, s := range sub.Slots[:inner] {
		links += len(g.adj[s])
	}
	src := make([]int64, 0, links)
	dst := make([]int64, 0, links)
	for iu := 0; iu < inner; iu++ {
		for _, w := range g.adj[sub.Slots[iu]] {
			iw := add(w)
			if int(iw) < inner && int(iw) < iu {
				continue // an inner link, listed from its lower end
			}
			src = append(src, int64(iu))
			dst = append(dst, int64(iw))
		}
	}
	sub.EdgeIndex = append(src, dst...)
	f := g.featureDim
	sub.Features = make([]float32, len(sub.Slots)*f)
	for i, s := range sub.Slots {
		copy(sub.Features[i*f:(i+1)*f], g.features[int(s)*f:(int(s)+1)*f])
	}
	return sub
}

// scratch maps slots to subgraph indexes for one Extract without a map:
// an entry is valid when its stamp is the current epoch, so resetting is
// one increment, not a clear of NumSlots entries.
type scratch struct {
	stamp []uint32
	index []int32
	epoch uint32
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (sc *scratch) reset(slots int) {
	if len(sc.stamp) < slots {
		sc.stamp = make([]uint32, slots+slots/4)
		sc.index = make([]int32, len(sc.stamp))
		sc.epoch = 0
	}
	sc.epoch++
	if sc.epoch == 0 { // wrapped: stale stamps could match
		clear(sc.stamp)
		sc.epoch = 1
	}
}

func (sc *scratch) get(s int32) (int32, bool) {
	if sc.stamp[s] == sc.epoch {
		return sc.index[s], true
	}
	return 0, false
}

func (sc *scratch) set(s, i int32) {
	sc.stamp[s] = sc.epoch
	sc.index[s] = i
}

// Whole returns the whole graph in the model's input form, each link once
// (self loops omitted: they count for nothing) and the live slots in slot
// order: what full-graph inference runs on. Slots maps rows to slots.
func (g *Graph) Whole() *Subgraph {
	sub := &Subgraph{}
	row := make([]int32, len(g.ids))
	for s, id := range g.ids {
		if id != "" {
			row[s] = int32(len(sub.Slots))
			sub.Slots = append(sub.Slots, int32(s))
		}
	}
	src := make([]int64, 0, g.links)
	dst := make([]int64, 0, g.links)
	for _, s := range sub.Slots {
		for _, w := range g.adj[s] {
			if s < w {
				src = append(src, int64(row[s]))
				dst = append(dst, int64(row[w]))
			}
		}
	}
	sub.EdgeIndex = append(src, dst...)
	f := g.featureDim
	sub.Features = make([]float32, len(sub.Slots)*f)
	for i, s := range sub.Slots {
		copy(sub.Features[i*f:(i+1)*f], g.features[int(s)*f:(int(s)+1)*f])
	}
	return sub
}
