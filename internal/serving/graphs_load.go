package serving

import (
	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// GraphLoad counts a LoadGraph stream under way in --max-graph-bytes: the
// chunks it has received are held in memory until the stream ends, so a
// stream that sends more than the budget is refused as its chunks arrive,
// not at its end, and a stalled one holds its share of the budget (until
// the transport's read timeout cuts it off and Release gives it back)
// rather than memory nobody counts.
type GraphLoad struct {
	gs   *Graphs
	id   string
	held int64
}

// BeginLoad starts counting a load of graph id (the id its first chunk
// names). An id that is not valid, or names an existing graph, is refused
// here, before the stream sends the rest (the create at its end checks
// again).
func (gs *Graphs) BeginLoad(id string) (*GraphLoad, error) {
	if err := checkGraphID(id); err != nil {
		return nil, err
	}
	gs.mu.Lock()
	_, exists := gs.byID[id]
	gs.mu.Unlock()
	if exists {
		return nil, gcnerr.New(gcnerr.AlreadyExists, "graph %q exists (DeleteGraph it first)", id)
	}
	return &GraphLoad{gs: gs, id: id}, nil
}

// Per-item bytes a load holds until its stream ends: a node's id, its
// features (the received message's slice) and its graphs.Node; an edge's
// graphs.Edge and its two ids, each a string of its own.
const (
	loadNodeBytes = 64
	loadEdgeBytes = 48
)

// Add counts one chunk's nodes and edges, refusing (TooLarge naming
// --max-graph-bytes) a load that no longer fits beside the stored graphs
// and the other loads.
func (l *GraphLoad) Add(nodes []*gcnpb.Node, edges []*gcnpb.Edge) error {
	var n int64
	for _, x := range nodes {
		n += loadNodeBytes + int64(len(x.GetId())) + 4*int64(len(x.GetFeatures()))
	}
	for _, e := range edges {
		n += loadEdgeBytes + int64(len(e.GetSourceId())) + int64(len(e.GetTargetId()))
	}
	gs := l.gs
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if max := gs.opts.MaxBytes; max > 0 && gs.bytes+gs.loading+n > max {
		return gcn.Errorf(gcn.KindTooLarge, "LoadGraph of graph %s holds %d bytes so far and needs %d more: stored graphs and loads would hold %d bytes, the budget is %d (--max-graph-bytes)",
			quoteShort(l.id), l.held, n, gs.bytes+gs.loading+n, max)
	}
	gs.loading += n
	l.held += n
	return nil
}

// Release gives the load's bytes back: call it when the stream ends, on
// every path (before CreateGraph counts the graph itself). Idempotent.
func (l *GraphLoad) Release() {
	l.gs.mu.Lock()
	l.gs.loading -= l.held
	l.held = 0
	l.gs.mu.Unlock()
}
