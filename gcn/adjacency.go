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
// It is a counting sort: two passes over the edges, no comparison sort, on
// one goroutine.
func NewAdjacency(numNodes int, edgeIndex []int64) (*Adjacency, error) {
	return buildAdjacency(numNodes, edgeIndex, 1, nil)
}

// edgesPerBuildWorker is the edges below which the adjacency build is not
// worth another goroutine (two passes of a few ns per edge each, against a
// few µs to start a goroutine and numNodes counters to merge).
const edgesPerBuildWorker = 1 << 16

// buildAdjacency is NewAdjacency on up to workers goroutines, in the
// buffers of sc when not nil (the Adjacency then lives in sc until sc is
// reused). The edges are cut into contiguous parts, each counted and then
// placed by its own goroutine; part k's entries of row v start after those
// of parts 0..k-1, so every row lists its entries in edge order exactly as
// the one-goroutine build does: the result is the same whatever workers is.
func buildAdjacency(numNodes int, edgeIndex []int64, workers int, sc *scratch) (*Adjacency, error) {
	e := len(edgeIndex) / 2
	if numNodes >= math.MaxInt32 || 2*e >= math.MaxInt32 {
		return nil, fmt.Errorf("graph of %d nodes and %d edges is too large for 32-bit adjacency", numNodes, e)
	}
	if sc == nil {
		sc = new(scratch)
	}
	src, dst := edgeIndex[:e], edgeIndex[e:2*e]
	parts := min(workers, e/edgesPerBuildWorker)
	if parts <= 1 {
		return buildAdjacency1(numNodes, src, dst, sc), nil
	}
	// cursors[k][v] counts part k's entries in row v, then (after the
	// prefix sums) is where part k's next entry of row v goes.
	cursors := sc.cursors(parts, numNodes)
	bounds := make([]int, parts+1)
	for k := range bounds {
		bounds[k] = e * k / parts
	}
	entries := make([]int, parts)
	parallelParts(parts, func(k int) {
		c := cursors[k]
		clear(c)
		n := 0
		for j, s := range src[bounds[k]:bounds[k+1]] {
			d := dst[bounds[k]+j]
			if s == d {
				continue
			}
			c[d]++
			c[s]++
			n += 2
		}
		entries[k] = n
	})
	total := 0
	for _, n := range entries {
		total += n
	}
	off := grow(sc, &sc.offsets, numNodes+1)
	// Row starts, and each part's start within each row, by node ranges on
	// the parts' goroutines: a range's first offset is the entries of the
	// rows before it, summed first (one pass over the counters each).
	rowStart := make([]int32, parts+1)
	ranges := make([]int, parts+1)
	for k := range ranges {
		ranges[k] = numNodes * k / parts
	}
	parallelParts(parts, func(r int) {
		var sum int32
		for v := ranges[r]; v < ranges[r+1]; v++ {
			for _, c := range cursors {
				sum += c[v]
			}
		}
		rowStart[r+1] = sum
	})
	for r := range parts {
		rowStart[r+1] += rowStart[r]
	}
	parallelParts(parts, func(r int) {
		at := rowStart[r]
		for v := ranges[r]; v < ranges[r+1]; v++ {
			off[v] = at
			for _, c := range cursors {
				n := c[v]
				c[v] = at
				at += n
			}
		}
	})
	off[numNodes] = int32(total)
	sources := grow(sc, &sc.sources, total)
	parallelParts(parts, func(k int) {
		c := cursors[k]
		for j, s := range src[bounds[k]:bounds[k+1]] {
			d := dst[bounds[k]+j]
			if s == d {
				continue
			}
			sources[c[d]] = int32(s)
			c[d]++
			sources[c[s]] = int32(d)
			c[s]++
		}
	})
	return &Adjacency{NumNodes: numNodes, Offsets: off, Sources: sources}, nil
}

// buildAdjacency1 is buildAdjacency on the calling goroutine.
func buildAdjacency1(numNodes int, src, dst []int64, sc *scratch) *Adjacency {
	// Counts go to off[v+2] so that, after the prefix sum, off[v+1] is the
	// start of row v and serves as its fill cursor; once filled, off[v+1]
	// has moved to the end of row v: the start of row v+1. No second array.
	off := grow(sc, &sc.offsets, numNodes+2)
	clear(off)
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
	sources := grow(sc, &sc.sources, entries)
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
	return &Adjacency{NumNodes: numNodes, Offsets: off[:numNodes+1], Sources: sources}
}

// check reports whether a is well formed: offsets rising from 0 to
// len(Sources), every source a node. The native pass's assembly indexes
// rows by Sources without bounds checks, so an Adjacency from outside is
// checked first.
func (a *Adjacency) check() error {
	n := a.NumNodes
	if n < 0 || len(a.Offsets) != n+1 || a.Offsets[0] != 0 || int(a.Offsets[n]) != len(a.Sources) {
		return fmt.Errorf("adjacency of %d nodes: %d offsets (want %d, from 0 to the %d sources)", n, len(a.Offsets), n+1, len(a.Sources))
	}
	for v := range n {
		if a.Offsets[v+1] < a.Offsets[v] {
			return fmt.Errorf("adjacency: offset %d (%d) is below offset %d (%d)", v+1, a.Offsets[v+1], v, a.Offsets[v])
		}
	}
	for k, s := range a.Sources {
		if uint32(s) >= uint32(n) {
			return fmt.Errorf("adjacency: source %d is %d, not a node in [0, %d)", k, s, n)
		}
	}
	return nil
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
