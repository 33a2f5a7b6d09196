package serving

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
)

// ScoreResult answers ScoreNodes.
type ScoreResult struct {
	// IDs are the asked node ids, in request order.
	IDs []string
	// Scores, Probabilities ([len(IDs), NumClasses]) and ClassIndex are per
	// asked node, as in gcn.Prediction.
	Scores        []float32
	Probabilities []float32
	ClassIndex    []int32
	NumClasses    int
	ClassNames    []string
	// Revision is the graph revision the scores reflect.
	Revision uint64
	// Model and Version answered.
	Model, Version string
}

// ScoreNodes scores nodes ids of graph id with its model's currently served
// version, exactly as ProcessGraph on the whole graph would. With
// minRevision > 0 it first waits until the graph has reached that revision
// (waitRevision): at most GraphOptions.RevisionWait, then FailedPrecondition,
// or until ctx ends.
func (gs *Graphs) ScoreNodes(ctx context.Context, id string, ids []string, minRevision uint64) (ScoreResult, error) {
	start := time.Now()
	sg, err := gs.get(id)
	if err != nil {
		return ScoreResult{}, err
	}
	if err := gs.waitRevision(ctx, sg, minRevision); err != nil {
		return ScoreResult{}, err
	}
	lease, err := gs.svc.cfg.Repository.Acquire(sg.model, sg.version)
	if err != nil {
		var e *gcn.Error
		if errors.As(err, &e) && e.Kind == gcn.KindNotFound {
			gs.svc.cfg.Metrics.GraphModelRefused("removed")
			return ScoreResult{}, gcnerr.New(gcnerr.FailedPrecondition, "graph %q: its model %q is not served any more (%s)", id, sg.modelLabel(), e.Msg)
		}
		return ScoreResult{}, err
	}
	defer lease.Release()
	info := lease.Model.Info()
	hops, err := receptiveField(lease.Name, info)
	if err != nil {
		gs.svc.cfg.Metrics.GraphModelRefused("no_receptive_field")
		return ScoreResult{}, err
	}
	if lim := gs.svc.cfg.MaxNodes; lim > 0 && len(ids) > lim {
		return ScoreResult{}, gcn.Errorf(gcn.KindTooLarge, "request asks for %d nodes, limit is %d (--max-nodes)", len(ids), lim)
	}

	gs.ensureScorer(sg, lease, hops)
	sg.mu.RLock()
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			sg.mu.RUnlock()
		}
	}
	defer unlock()
	if sg.deleted {
		return ScoreResult{}, gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	if f := sg.g.FeatureDim(); info.FeatureDim != f {
		gs.svc.cfg.Metrics.GraphModelRefused("feature_dim")
		gs.log.Warn("model version refused for a stored graph: feature dimension does not fit",
			"graph", id, "model", lease.Name, "version", lease.Version, "model_features", info.FeatureDim, "graph_features", f)
		return ScoreResult{}, gcnerr.New(gcnerr.FailedPrecondition, "graph %q has %d features per node, model %q version %d wants %d",
			id, f, lease.Name, lease.Version, info.FeatureDim)
	}
	rev := sg.g.Revision()
	if minRevision > rev {
		return ScoreResult{}, gcnerr.New(gcnerr.FailedPrecondition, "graph %q is at revision %d, min_revision %d not reached", id, rev, minRevision)
	}
	slots := make([]int32, len(ids))
	for i, nid := range ids {
		s, ok := sg.g.Slot(nid)
		if !ok {
			return ScoreResult{}, gcn.Errorf(gcn.KindInvalidArgument, "node %d: %s is not a node of graph %q", i, quoteShort(nid), id)
		}
		slots[i] = s
	}
	c := info.NumClasses
	probs := make([]float32, len(ids)*c)
	var sub *graphs.Subgraph
	if len(ids) == 0 {
		unlock() // nothing to run the model on
	} else if sc := gs.scorerLocked(sg, lease); sc != nil {
		if err := sc.Probabilities(slots, probs); err != nil {
			return ScoreResult{}, err
		}
		unlock()
	} else {
		// Recompute: cut the subgraph under the lock, run the model
		// without it, so deltas wait only for the extraction.
		sub = sg.g.Extract(slots, hops)
		unlock()
		if gs.svc.cfg.Budget != nil {
			res, err := gs.svc.cfg.Budget.Reserve(ctx, min(gs.svc.costFor(info, 0, sub.NumNodes(), sub.NumEdges()), gs.svc.cfg.Budget.Bytes()))
			if err != nil {
				return ScoreResult{}, err
			}
			defer res.Release()
		}
		p, err := lease.Model.Predict(ctx, gcn.Tensors{NumNodes: sub.NumNodes(), Features: sub.Features, EdgeIndex: sub.EdgeIndex})
		if err != nil {
			return ScoreResult{}, err
		}
		for i, row := range sub.Rows {
			copy(probs[i*c:(i+1)*c], p.Probabilities[int(row)*c:(int(row)+1)*c])
		}
	}
	out := ScoreResult{
		IDs: ids, Probabilities: probs, NumClasses: c, ClassNames: info.ClassNames,
		Scores: make([]float32, len(ids)), ClassIndex: make([]int32, len(ids)),
		Revision: rev, Model: lease.Name, Version: strconv.FormatInt(lease.Version, 10),
	}
	for i := range ids {
		row := probs[i*c : (i+1)*c]
		top := int32(0)
		for k, v := range row {
			if v > row[top] {
				top = int32(k)
			}
		}
		out.ClassIndex[i] = top
		if info.ScoreClass >= 0 {
			out.Scores[i] = row[info.ScoreClass]
		} else {
			out.Scores[i] = row[top]
		}
	}
	gs.svc.cfg.Metrics.GraphScored(time.Since(start))
	return out, nil
}

// waitRevision waits until sg has reached revision want (0: no wait),
// holding no lock meanwhile: each delta wakes it to look again. It ends
// NotFound if the graph is deleted, with ctx's error when the call ends,
// and FailedPrecondition naming both revisions after RevisionWait.
func (gs *Graphs) waitRevision(ctx context.Context, sg *storedGraph, want uint64) error {
	var timeout <-chan time.Time
	for {
		next := sg.nextChange() // before the look: a change after it wakes us
		sg.mu.RLock()
		rev, deleted := sg.g.Revision(), sg.deleted
		sg.mu.RUnlock()
		switch {
		case deleted:
			return gcn.Errorf(gcn.KindNotFound, "no stored graph %q", sg.id)
		case rev >= want:
			return nil
		case timeout == nil:
			t := time.NewTimer(gs.opts.RevisionWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return gcnerr.New(gcnerr.FailedPrecondition, "graph %q is at revision %d, min_revision %d not reached within %v (--graph-revision-wait)",
				sg.id, rev, want, gs.opts.RevisionWait)
		}
	}
}

// scorerLocked returns sg's stateful scorer for the leased version, or nil
// for recompute. sg.mu is held for reading.
func (gs *Graphs) scorerLocked(sg *storedGraph, lease *modelrepo.Lease) graphs.Scorer {
	if sg.scorer != nil && sg.scorerVersion == lease.Version && sg.scorerSHA == lease.SHA256 {
		return sg.scorer
	}
	return nil
}

// ensureScorer builds sg's scorer for the leased version with NewScorer
// when it has none for it: a new version (or file) drops the old state.
// A build that fails leaves the graph in recompute mode, logged.
func (gs *Graphs) ensureScorer(sg *storedGraph, lease *modelrepo.Lease, hops int) {
	if gs.opts.NewScorer == nil {
		return
	}
	sg.mu.RLock()
	fresh := scorerTriedLocked(sg, lease)
	sg.mu.RUnlock()
	if fresh {
		return
	}
	sg.wmu.Lock()
	defer sg.wmu.Unlock()
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if sg.deleted || scorerTriedLocked(sg, lease) || sg.g.FeatureDim() != lease.Model.Info().FeatureDim {
		return
	}
	// The old version's state goes before the new one is built. The
	// outcome is kept for this version (scorerTriedLocked): a refused build
	// is not retried at every score.
	sg.scorer = nil
	sc, mode, err := gs.opts.NewScorer(sg.g, lease.Model, hops)
	sg.scorerVersion, sg.scorerSHA = lease.Version, lease.SHA256
	if err != nil || sc == nil {
		if err != nil {
			gs.log.Warn("stored graph scores by recompute: no incremental state", "graph", sg.id, "model", lease.Name, "version", lease.Version, "err", err)
		}
		sg.scorer, sg.mode = nil, ModeRecompute
		gs.recount(sg)
		return
	}
	sg.scorer, sg.mode = sc, mode
	if err := gs.account(sg, sg.bytesLocked()); err != nil {
		// No room for the per-layer state: recompute needs none.
		gs.log.Warn("stored graph scores by recompute: its incremental state does not fit --max-graph-bytes", "graph", sg.id, "err", err)
		sg.scorer, sg.mode = nil, ModeRecompute
		gs.recount(sg)
	}
}

// bytesLocked is what sg counts against --max-graph-bytes: the graph, its
// scorer's state and the graph's fixed overhead. sg.wmu is held.
func (sg *storedGraph) bytesLocked() int64 {
	n := sg.g.Bytes() + sg.overhead()
	if sg.scorer != nil {
		n += sg.scorer.Bytes()
	}
	return n
}
