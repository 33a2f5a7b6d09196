package gcn

import (
	"fmt"
	"math"
)

// Adjacency is a graph's links in compressed sparse rows sorted by target,
// built once per request and shared by every layer: the neighbours of node
// d are Sources[Offsets[d]:Offsets[d+1]]. Each listed edge (s, d) with
// s != d is one undirected link and appears twice (s in d's row, d in s's
// row); listed self loops are left out (every Aggregation adds exactly one
// self loop itself); duplicates stay (multigraph). Within a row, entries are
// in the order of the edges that made them, so every sum over a row runs in
// one fixed order: results are the same bit for bit however the work is
// split.
type Adjacency struct {
	NumNodes int
	// Offsets has NumNodes+1 entries; Offsets[0] = 0.
	Offsets []int32
	// Sources are node indexes, grouped by target.
	Sources []int32
}

// NewAdjacency builds the Adjacency of numNodes nodes and edgeIndex, the
// [2, E] edge list of the model contract (row 0 sources, row 1 targets),
// whose values must already be in [0, numNodes) (Tensors.check ensures it).
// It is a counting sort: two passes over the edges, no comparison sort.
func NewAdjacency(numNodes int, edgeIndex []int64) (*Adjacency, error) {
	e := len(edgeIndex) / 2
	if numNodes >= math.MaxInt32 || 2*e >= math.MaxInt32 {
		return nil, fmt.Errorf("graph of %d nodes and %d edges is too large for 32-bit adjacency", numNodes, e)
	}
	src, dst := edgeIndex[:e], edgeIndex[e:2*e]
	// Counts go to off[v+2] so that, after the prefix sum, off[v+1] is the
	// start of row v and serves as its fill cursor; once filled, off[v+1]
	// has moved to the end of row v: the start of row v+1. No second array.
	off := make([]int32, numNodes+2)
	entries := 0
	for j, s := range src {
		d := dst[j]
		if s == d {
			continue
		}
		off[d+2]++
		off[s+2]++
		entries += 2
	}
	for v := 2; v < len(off); v++ {
		off[v] += off[v-1]
	}
	sources := make([]int32, entries)
	for j, s := range src {
		d := dst[j]
		if s == d {
			continue
		}
		sources[off[d+1]] = int32(s)
		off[d+1]++
		sources[off[s+1]] = int32(d)
		off[s+1]++
	}
	return &Adjacency{NumNodes: numNodes, Offsets: off[:numNodes+1], Sources: sources}, nil
}

// Degree is 1 + the number of links at v: the size of v's closed
// neighbourhood (its self loop included).
func (a *Adjacency) Degree(v int) int { return 1 + int(a.Offsets[v+1]-a.Offsets[v]) }

// NumEntries is the number of (target, source) entries: twice the links.
func (a *Adjacency) NumEntries() int { return len(a.Sources) }

// splitTargets cuts [0, NumNodes) into at most parts ranges of about equal
// work (entries plus one per node for its self loop). bounds[k]..bounds[k+1]
// is range k.
func (a *Adjacency) splitTargets(parts int) []int {
	n := a.NumNodes
	if parts <= 1 || n == 0 {
		return []int{0, n}
	}
	total := int64(len(a.Sources)) + int64(n)
	bounds := []int{0}
	v := 0
	for k := 1; k < parts; k++ {
		want := total * int64(k) / int64(parts)
		// First v with Offsets[v] + v >= want (monotone in v).
		lo, hi := v, n
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if int64(a.Offsets[mid])+int64(mid) < want {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo > bounds[len(bounds)-1] && lo < n {
			bounds = append(bounds, lo)
		}
		v = lo
	}
	return append(bounds, n)
}
