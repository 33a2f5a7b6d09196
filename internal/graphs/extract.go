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
// every node within k hops must be in the subgraph, with some node at its
// far end. The far ends (k+1 hops away) are there only to make their
// neighbours' degrees right: their own values and degrees are never read.
// So Extract sends every such link to one stand-in node with zero features
// (duplicate links count, so each k-hop node keeps its degree): the model
// runs on the k-hop ball plus one node instead of the (k+1)-hop ball, about
// ten times fewer nodes at degree 10. The stand-in is k+1 hops from every
// asked node (it touches only k-hop nodes), so it is not read either. The
// graph induced on the k-hop ball is not enough (its boundary nodes would
// lose links, so degree). TestStatefulExactCora and ...Synthetic100k check
// it against the whole graph; TestExtractInducedIsNotEnough shows the
// induced graph is wrong.
type Subgraph struct {
	// Slots maps each subgraph node index to its graph slot; the asked
	// nodes come first, deduplicated, in the order first asked. The
	// stand-in for the far ends, when there is one, is last, with slot -1.
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
// a model of receptive field hops (see Subgraph): every node within hops of
// them, every link of each, the links leaving that ball ending at one
// stand-in node. It only reads g.
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
	// Every link of the nodes within hops, once; a link leaving the ball
	// ends at the stand-in.
	var links int
	for _, s := range sub.Slots[:inner] {
		links += len(g.adj[s])
	}
	src := make([]int64, 0, links)
	dst := make([]int64, 0, links)
	standIn := int64(-1)
	for iu := 0; iu < inner; iu++ {
		for _, w := range g.adj[sub.Slots[iu]] {
			iw, ok := sc.get(w)
			switch {
			case !ok:
				if standIn < 0 {
					standIn = int64(inner)
				}
				src = append(src, int64(iu))
				dst = append(dst, standIn)
			case int(iw) > iu: // an inner link, listed from its lower end
				src = append(src, int64(iu))
				dst = append(dst, int64(iw))
			}
		}
	}
	if standIn >= 0 {
		sub.Slots = append(sub.Slots, -1)
	}
	sub.EdgeIndex = append(src, dst...)
	f := g.featureDim
	sub.Features = make([]float32, len(sub.Slots)*f) // the stand-in's stay 0
	for i, s := range sub.Slots[:inner] {
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
