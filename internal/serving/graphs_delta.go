package serving

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphs/store"
)

// publishSoon updates the stored-graph gauges within a second, once however
// many deltas arrive meanwhile: publish walks every graph.
func (gs *Graphs) publishSoon() {
	if gs.svc.cfg.Metrics == nil || !gs.publishing.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(time.Second, func() {
		gs.publishing.Store(false)
		gs.publish()
	})
}

// deltaGrowth bounds the bytes a delta can add to a graph: each new node a
// slot, its features and id; each added edge two adjacency entries, with
// room for a list to double.
func deltaGrowth(g *graphs.Graph, d *graphs.Delta) int64 {
	var n int64
	for _, u := range d.UpsertNodes {
		n += int64(len(u.ID)) + 4*int64(len(u.Features)) + 96
	}
	return n + 16*int64(len(d.AddEdges))
}

// ApplyDelta applies d to graph id atomically and returns the graph's
// revision after it (for a delta whose idempotency key was seen, the
// revision it produced then). With a store, the delta is committed to disk
// before it is applied in memory and acknowledged.
func (gs *Graphs) ApplyDelta(ctx context.Context, id string, d *graphs.Delta) (uint64, error) {
	rev, _, err := gs.ApplyDeltaResult(ctx, id, d)
	return rev, err
}

// ApplyDeltaResult is ApplyDelta that also says whether the delta was a
// duplicate (its idempotency key seen: nothing applied now).
func (gs *Graphs) ApplyDeltaResult(ctx context.Context, id string, d *graphs.Delta) (rev uint64, duplicate bool, err error) {
	start := time.Now()
	rev, changes, dup, err := gs.applyDelta(ctx, id, d)
	m := gs.svc.cfg.Metrics
	switch {
	case err != nil:
		m.GraphDelta("refused", time.Since(start), 0)
	case dup:
		m.GraphDelta("duplicate", time.Since(start), 0)
	default:
		m.GraphDelta("applied", time.Since(start), changes)
	}
	return rev, dup, err
}

func (gs *Graphs) applyDelta(ctx context.Context, id string, d *graphs.Delta) (rev uint64, changes int, dup bool, err error) {
	sg, err := gs.get(id)
	if err != nil {
		return 0, 0, false, err
	}
	sg.wmu.Lock()
	defer sg.wmu.Unlock()
	if sg.deleted {
		return 0, 0, false, gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, false, err
	}
	p, err := sg.g.Prepare(d, gs.limits())
	if err != nil {
		return 0, 0, false, err
	}
	if p.Duplicate {
		return p.Revision, 0, true, nil
	}
	before := sg.counted.Load()
	if err := gs.account(sg, before+deltaGrowth(sg.g, d)); err != nil {
		return 0, 0, false, err
	}
	// Durable first: readers keep reading the previous revision meanwhile.
	if gs.opts.Store != nil {
		rec := graphs.EncodeDelta(d)
		t := time.Now()
		err := gs.opts.Store.Append(id, p.Revision, rec)
		gs.svc.cfg.Metrics.GraphStoreWrite("append", time.Since(t))
		if err != nil {
			gs.account(sg, before)
			return 0, 0, false, fmt.Errorf("storing delta of graph %q: %w", id, err)
		}
		sg.logBytes += int64(len(rec))
	}
	sg.mu.Lock()
	ch := sg.g.Apply(p)
	if sg.scorer != nil {
		if err := sg.scorer.Apply(ch); err != nil {
			// The graph is right; the scorer is rebuilt at the next score.
			gs.log.Error("graph scorer update failed; rebuilding", "graph", id, "err", err)
			sg.scorer, sg.mode = nil, ""
		}
	}
	sg.mu.Unlock()
	sg.changed()
	gs.recount(sg) // the exact figure: a scorer's state can outgrow the bound above
	gs.maybeCompact(sg)
	gs.publishSoon()
	return p.Revision, len(ch), false, nil
}

// maybeCompact starts folding sg's log into a new snapshot when the log has
// grown past the last snapshot. sg.wmu is held, so g does not change: the
// snapshot is encoded now (consistent), written to disk on another
// goroutine.
func (gs *Graphs) maybeCompact(sg *storedGraph) {
	if gs.opts.Store == nil || sg.logBytes < gs.opts.SnapshotBytes || sg.logBytes < sg.snapBytes {
		return
	}
	if !sg.compacting.CompareAndSwap(false, true) {
		return
	}
	snap := sg.g.AppendSnapshot(make([]byte, 0, sg.g.SnapshotSize()))
	rev := sg.g.Revision()
	sg.logBytes, sg.snapBytes = 0, int64(len(snap))
	sg.compaction.Add(1)
	go func() {
		defer sg.compaction.Done()
		defer sg.compacting.Store(false)
		t := time.Now()
		err := gs.opts.Store.WriteSnapshot(sg.id, rev, snap)
		gs.svc.cfg.Metrics.GraphStoreWrite("snapshot", time.Since(t))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			gs.log.Error("graph snapshot failed; the delta log keeps growing until one succeeds", "graph", sg.id, "err", err)
		}
	}()
}
