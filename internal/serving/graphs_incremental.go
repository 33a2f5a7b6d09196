package serving

import (
	"context"
	"fmt"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/incremental"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
)

// This file joins the stored graphs (internal/graphs, pure Go) to the
// incremental engine (internal/incremental, per-layer state on a
// gcn.Network). Neither imports the other: serving owns both, and
// internal/server picks the engine by setting GraphOptions.NewScorer to
// IncrementalScorer (--graph-incremental).

// IncrementalScorer is a GraphOptions.NewScorer: for a model version with a
// verified layer description (gcn.Model.Network) it builds the incremental
// engine's per-layer state of g (ModeIncremental); for any other model it
// returns a nil Scorer, which leaves the graph to recompute
// (ModeRecompute). g must not change while it runs (the caller holds the
// graph's locks), and from then on the state reads g and is kept current
// by Apply with every delta's changes.
func IncrementalScorer(g *graphs.Graph, m *gcn.Model, hops int) (graphs.Scorer, string, error) {
	net := m.Network()
	if net == nil {
		return nil, ModeRecompute, nil
	}
	if n := len(net.Layers); n > hops {
		// The receptive field is the contract stored graphs read; a
		// network with more layers than it declares is inconsistent.
		return nil, ModeRecompute, fmt.Errorf("model has %d message-passing layers but declares %q %d", n, gcn.MetadataReceptiveField, hops)
	}
	// New, not NewConcurrent: the graph's own RWMutex already orders
	// deltas and scores (the id-to-slot map lives in internal/graphs), so
	// lock-free views would only add their row copies and second view
	// (docs/INCREMENTAL.md, "Concurrent scores").
	st, err := incremental.New(net, g)
	if err != nil {
		return nil, ModeRecompute, err
	}
	return &incrementalScorer{st: st}, ModeIncremental, nil
}

// incrementalScorer adapts an incremental.State to graphs.Scorer: the two
// packages keep their own Change types (neither imports the other).
type incrementalScorer struct {
	st *incremental.State
	// buf holds the translated changes; Apply runs under the graph's write
	// lock only, so one buffer serves every call.
	buf []incremental.Change
}

// incrementalKinds maps graphs.ChangeKind to incremental.ChangeKind.
var incrementalKinds = [...]incremental.ChangeKind{
	graphs.EdgeAdded:       incremental.EdgeAdded,
	graphs.EdgeRemoved:     incremental.EdgeRemoved,
	graphs.NodeAdded:       incremental.NodeAdded,
	graphs.NodeRemoved:     incremental.NodeRemoved,
	graphs.FeaturesChanged: incremental.FeaturesChanged,
}

// Probabilities implements graphs.Scorer.
func (s *incrementalScorer) Probabilities(nodes []int32, dst []float32) error {
	return s.st.Probabilities(nodes, dst)
}

// Apply implements graphs.Scorer. An unknown kind is an error (the owner
// then drops the state and rebuilds it).
func (s *incrementalScorer) Apply(changes []graphs.Change) error {
	s.buf = s.buf[:0]
	for i, c := range changes {
		if int(c.Kind) >= len(incrementalKinds) || incrementalKinds[c.Kind] == 0 {
			return fmt.Errorf("incremental scorer: change %d: unknown kind %d", i, c.Kind)
		}
		s.buf = append(s.buf, incremental.Change{Kind: incrementalKinds[c.Kind], U: c.U, V: c.V})
	}
	err := s.st.Apply(s.buf)
	if cap(s.buf) > 1<<16 {
		s.buf = nil // a load's batch: do not keep it
	}
	return err
}

// Bytes implements graphs.Scorer: the per-layer state (docs/INCREMENTAL.md,
// "Memory"), counted in --max-graph-bytes with the graph.
func (s *incrementalScorer) Bytes() int64 { return s.st.Bytes() + int64(cap(s.buf))*12 }

// recount records sg's exact bytes after a change already applied (and,
// with a store, acknowledged to disk): it cannot be refused, so it is set
// even past the budget, which then refuses the next growth. sg.wmu is held.
func (gs *Graphs) recount(sg *storedGraph) {
	n := sg.bytesLocked()
	gs.mu.Lock()
	gs.bytes += n - sg.counted.Load()
	sg.counted.Store(n)
	gs.mu.Unlock()
}

// prepareScorer builds sg's scorer for the version it would be scored with
// now, so GetGraph reports the mode its scores are computed in (a graph
// not scored since its creation or a restart has none yet). A model that
// is not served any more leaves the mode as it is.
func (gs *Graphs) prepareScorer(sg *storedGraph) {
	if gs.opts.NewScorer == nil {
		return
	}
	lease, err := gs.svc.cfg.Repository.Acquire(sg.model, sg.version)
	if err != nil {
		return
	}
	defer lease.Release()
	hops, err := receptiveField(lease.Name, lease.Model.Info())
	if err != nil {
		return
	}
	gs.ensureScorer(sg, lease, hops)
}

// scorerTriedLocked reports whether a scorer was built (or its build
// refused) for the leased version already. sg.mu is held.
func scorerTriedLocked(sg *storedGraph, lease *modelrepo.Lease) bool {
	return sg.mode != "" && sg.scorerVersion == lease.Version && sg.scorerSHA == lease.SHA256
}

// CreateGraph creates graph id bound to model (empty: the default model)
// and version (empty: follow its highest served version), loaded with
// initial (nil: empty) as its revision 1. The model must declare its
// receptive field. The graph's scorer is built before it returns, so the
// answer names the mode scores will run in and counts the state's bytes,
// and the first score does not wait for the build.
func (gs *Graphs) CreateGraph(ctx context.Context, id, model, version string, initial *graphs.Delta) (GraphInfo, error) {
	info, err := gs.createGraph(ctx, id, model, version, initial)
	if err != nil || gs.opts.NewScorer == nil {
		return info, err
	}
	sg, err := gs.get(id)
	if err != nil {
		return info, nil // deleted meanwhile: the creation stands answered
	}
	gs.prepareScorer(sg)
	sg.mu.RLock()
	if sg.mode != "" {
		info.Mode = sg.mode
	}
	info.Bytes = sg.counted.Load()
	sg.mu.RUnlock()
	return info, nil
}
