package graphcheck

import (
	"fmt"
	"runtime"
	"sync"
)

// EdgeChunk is up to LookupChunk consecutive edges on their way to
// EdgeIndex: filled, then resolved together (see idIndex.lookupAll).
type EdgeChunk struct {
	Start, N int                     // edges Start .. Start+N-1
	Ends     [2 * LookupChunk]string // source, target of each edge
	found    [2 * LookupChunk]int32
	keys     [2 * LookupChunk]uint64 // lookupAll's scratch
	hashes   [2 * LookupChunk]uint64
	pending  [2 * LookupChunk]int32
}

// resolve looks up the chunk's endpoints and writes their node indexes
// into edgeIndex (sources, then targets). It returns the first edge (of the
// chunk, 0-based) with an endpoint that is not a node id, or -1; edges
// before that one are written.
func (c *EdgeChunk) resolve(x *idIndex, edgeIndex []int64) int {
	ends := 2 * c.N
	bad := x.lookupAll(c.Ends[:ends], c.found[:ends], c.keys[:ends], c.hashes[:ends], c.pending[:ends])
	if bad >= 0 {
		ends = bad &^ 1
	}
	edges := len(edgeIndex) / 2
	src, dst := edgeIndex[c.Start:], edgeIndex[edges+c.Start:]
	for e := range ends / 2 {
		src[e], dst[e] = int64(c.found[2*e]), int64(c.found[2*e+1])
	}
	if bad < 0 {
		return -1
	}
	return bad / 2
}

// chunkPool recycles EdgeChunks (20 KB each) across requests.
var chunkPool = sync.Pool{New: func() any { return new(EdgeChunk) }}

// MaxParts bounds how many parts (and goroutines) one pass over nodes or
// edges is split into.
const MaxParts = 8

// minPart is the fewest nodes or edges worth a part of their own: below
// that, starting and joining a goroutine costs about what it saves.
const minPart = 4096

// ParallelEdges is the fewest nodes or edges that Parts splits in two.
const ParallelEdges = 2 * minPart

// Parts returns how many parts a pass over n nodes or edges runs in: one
// per minPart items, at most one per usable core (GOMAXPROCS) and at most
// MaxParts. Each part runs on its own goroutine; the result does not
// depend on the number of parts.
func Parts(n int) int {
	return max(1, min(n/minPart, runtime.GOMAXPROCS(0), MaxParts))
}

// EvenParts splits n items into Parts(n) parts of nearly equal size and
// returns their first items (starts[:Parts(n)]; starts has room for
// MaxParts).
func EvenParts(starts []int, n int) []int {
	parts := Parts(n)
	for p := range parts {
		starts[p] = p * n / parts
	}
	return starts[:parts]
}

// ResolveEdges writes the node indexes of every edge's endpoints into
// edgeIndex (2 x E, as Graph.EdgeIndex) and returns the error of the first
// edge, in request order, that fails. The edges are split into len(starts)
// parts as IndexNodes splits nodes (starts[0] is 0), each resolved on its
// own goroutine when there are several, a chunk of up to LookupChunk edges
// at a time: fill(p, c) stores the endpoints of edges c.Start ..
// c.Start+c.N-1 of part p in c.Ends (source, target of each), and is called
// for part p's chunks in edge order. When fill fails on an edge it sets c.N
// to the number of edges it stored before that one and returns that edge's
// error, which ResolveEdges returns unless one of those edges fails first.
// graphwire.Decode's fill parses wire bytes, FromSource's reads a Source.
func ResolveEdges(v *Validator, edgeIndex []int64, starts []int, fill func(part int, c *EdgeChunk) error) error {
	edges := len(edgeIndex) / 2
	if edges == 0 {
		return nil
	}
	if len(starts) == 1 {
		return resolvePart(v, edgeIndex, starts, 0, fill)
	}
	var run struct { // one allocation
		wg   sync.WaitGroup
		errs [MaxParts]error
	}
	for p := 1; p < len(starts); p++ {
		run.wg.Go(func() { run.errs[p] = resolvePart(v, edgeIndex, starts, p, fill) })
	}
	run.errs[0] = resolvePart(v, edgeIndex, starts, 0, fill)
	// Wait even after an error: the other parts write into edgeIndex,
	// which the caller must not see half-written by a goroutine that
	// outlives this call.
	run.wg.Wait()
	for _, err := range run.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// resolvePart is ResolveEdges for part p.
func resolvePart(v *Validator, edgeIndex []int64, starts []int, p int, fill func(part int, c *EdgeChunk) error) error {
	c := chunkPool.Get().(*EdgeChunk)
	used := 0
	for start, end := starts[p], partEnd(starts, p, len(edgeIndex)/2); start < end; start += LookupChunk {
		c.Start, c.N = start, min(LookupChunk, end-start)
		err := fill(p, c)
		used = max(used, 2*c.N)
		if bad := c.resolve(v.index, edgeIndex); bad >= 0 {
			err = c.explain(v, bad)
		}
		if err != nil {
			release(c, used)
			return err
		}
	}
	release(c, used)
	return nil
}

// release returns c to the pool, dropping its first used ids first: they
// alias a request buffer (or the caller's strings) that must not stay
// reachable from the pool.
func release(c *EdgeChunk, used int) {
	clear(c.Ends[:used])
	chunkPool.Put(c)
}

// explain returns the precise error of the chunk's edge e, which resolve
// found to have an endpoint that is not a node id.
func (c *EdgeChunk) explain(v *Validator, e int) error {
	if _, _, err := v.edge(c.Start+e, c.Ends[2*e], c.Ends[2*e+1]); err != nil {
		return err
	}
	return fmt.Errorf("graphcheck: internal error: edge %d failed to resolve, then resolved", c.Start+e)
}
