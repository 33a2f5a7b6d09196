package graphcheck

import (
	"fmt"
	"runtime"
	"sync"
)

// EdgeChunk is up to LookupChunk consecutive edges on their way to
// EdgeIndex: parsed, then resolved together (see idIndex.lookupAll).
type EdgeChunk struct {
	Start, N int                     // edges Start .. Start+N-1
	Ends     [2 * LookupChunk]string // source, target of each edge
	found    [2 * LookupChunk]int32
	hashes   [LookupChunk]uint64 // lookupAll's scratch
	resolved bool
}

// resolve looks up the chunk's endpoints and writes their node indexes
// into edgeIndex (sources, then targets); false if any is not a node id.
func (c *EdgeChunk) resolve(x *idIndex, edgeIndex []int64) bool {
	if !x.lookupAll(c.Ends[:2*c.N], c.found[:2*c.N], &c.hashes) {
		return false
	}
	edges := len(edgeIndex) / 2
	for e := range c.N {
		edgeIndex[c.Start+e], edgeIndex[edges+c.Start+e] = int64(c.found[2*e]), int64(c.found[2*e+1])
	}
	return true
}

// explain returns the precise error of the chunk's first unresolved edge.
func (c *EdgeChunk) explain(v *Validator) error {
	for e := range c.N {
		if _, _, err := v.edge(c.Start+e, c.Ends[2*e], c.Ends[2*e+1]); err != nil {
			return err
		}
	}
	return fmt.Errorf("graphcheck: internal error: edges %d to %d failed to resolve, then resolved", c.Start, c.Start+c.N-1)
}

// chunkPool recycles edgeChunks (20 KB each) across requests.
var chunkPool = sync.Pool{New: func() any { return new(EdgeChunk) }}

// ParallelEdges is how many edges make it worth resolving chunks on a
// second goroutine while this one parses the next: on big graphs parsing
// and lookups take similar time, so the pipeline roughly halves the wall
// time of the edge pass (the CPU spent stays the same).
const ParallelEdges = 16 * LookupChunk

// ResolveEdges writes the node indexes of every edge's endpoints into
// edgeIndex (2 x E, as Graph.EdgeIndex), a chunk of up to LookupChunk edges
// at a time, and returns the error of the first edge that fails (or fill's
// error). fill stores the endpoints of edges c.Start .. c.Start+c.N-1 in
// c.Ends (source, target of each); it is called in edge order, on the
// calling goroutine. graphwire.Decode's fill parses wire bytes, FromSource's reads a
// Source.
func ResolveEdges(v *Validator, edgeIndex []int64, fill func(c *EdgeChunk) error) error {
	edges := len(edgeIndex) / 2
	if edges == 0 {
		return nil
	}
	var pipe chan *EdgeChunk // chunks for the resolver goroutine; nil: resolve inline
	var results chan *EdgeChunk
	const buffers = 4 // chunks in flight: fill ahead without unbounded memory
	pool := make([]*EdgeChunk, 0, buffers)
	if edges >= ParallelEdges && runtime.GOMAXPROCS(0) > 1 {
		pipe, results = make(chan *EdgeChunk, buffers), make(chan *EdgeChunk, buffers)
		go func() {
			defer close(results)
			for c := range pipe {
				c.resolved = c.resolve(v.index, edgeIndex)
				results <- c
			}
		}()
		for range buffers {
			pool = append(pool, chunkPool.Get().(*EdgeChunk))
		}
	} else {
		pool = append(pool, chunkPool.Get().(*EdgeChunk))
	}
	inFlight := 0
	// collect takes one resolved chunk back; results arrive in edge order,
	// so the first failure is the first failing chunk.
	collect := func() error {
		c := <-results
		inFlight--
		pool = append(pool, c)
		if !c.resolved {
			return c.explain(v)
		}
		return nil
	}
	// stop drains the resolver before returning: it writes into edgeIndex,
	// which the caller must not see half-written by a goroutine that
	// outlives it.
	stop := func(err error) error {
		if pipe != nil {
			close(pipe)
			for c := range results {
				pool = append(pool, c)
			}
		}
		for _, c := range pool {
			// Drop the ids: they alias a request buffer (or the caller's
			// strings) that must not stay reachable from the pool. No
			// chunk of this request held more than 2*edges of them, and
			// clearing all 16 KiB cost small requests 1% of the CPU.
			clear(c.Ends[:min(2*edges, len(c.Ends))])
			chunkPool.Put(c)
		}
		return err
	}
	for start := 0; start < edges; start += LookupChunk {
		for len(pool) == 0 {
			if err := collect(); err != nil {
				return stop(err)
			}
		}
		c := pool[len(pool)-1]
		pool = pool[:len(pool)-1]
		c.Start, c.N = start, min(LookupChunk, edges-start)
		err := fill(c)
		if err == nil && pipe == nil && !c.resolve(v.index, edgeIndex) {
			err = c.explain(v)
		}
		if err != nil {
			pool = append(pool, c)
			return stop(err)
		}
		if pipe == nil {
			pool = append(pool, c)
			continue
		}
		pipe <- c
		inFlight++
	}
	for inFlight > 0 {
		if err := collect(); err != nil {
			return stop(err)
		}
	}
	return stop(nil)
}
