package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/graphs/store"
)

// GraphOptions configure stored graphs (NewGraphs).
type GraphOptions struct {
	// Store, when set, makes graphs durable: every acknowledged delta is
	// committed to it first, and NewGraphs recovers the graphs it holds.
	// Nil: graphs live in memory only.
	Store *store.Store
	// MaxBytes bounds the memory of all stored graphs together
	// (--max-graph-bytes; 0: unlimited).
	MaxBytes int64
	// SnapshotBytes: a graph's delta log is folded into a new snapshot once
	// it holds more than this many bytes and more than the last snapshot.
	// Default DefaultSnapshotBytes.
	SnapshotBytes int64
	// NewScorer, when set, builds the scorer of a graph for a model version
	// (the incremental engine plugs in here) and names its mode; it may
	// return a nil Scorer to fall back to recompute. Default: recompute.
	NewScorer func(g *graphs.Graph, m *gcn.Model, hops int) (graphs.Scorer, string, error)
	// RevisionWait is the longest a score with a min_revision the graph
	// has not reached waits for it (--graph-revision-wait), unless the
	// call's own deadline is sooner. Default DefaultRevisionWait.
	RevisionWait time.Duration
	// SendTimeout is the longest one chunk of an export may wait for the
	// client to take it before the export is cut off
	// (--stream-send-timeout; 0: no limit). The transports apply it.
	SendTimeout time.Duration
}

// DefaultRevisionWait is GraphOptions.RevisionWait's default.
const DefaultRevisionWait = 10 * time.Second

// GraphOverhead is what every stored graph counts in --max-graph-bytes
// beside its content (and its id's bytes): its records in the server (the
// graph, its index and key maps, its entry in the list) and its buckets in
// the store. An empty graph is not free, so creating graphs without end
// runs into the budget.
const GraphOverhead = 1024

// Modes a graph's scores are computed in (GetGraph).
const (
	ModeRecompute   = "recompute"
	ModeIncremental = "incremental"
)

// MaxGraphIDLength bounds a graph id.
const MaxGraphIDLength = 128

// DefaultSnapshotBytes is GraphOptions.SnapshotBytes' default. Folding the
// log once it outgrows the last snapshot keeps a graph's disk use within
// about three snapshots (the new one, the old one's freed pages, the log).
const DefaultSnapshotBytes = 4 << 20

// Graphs holds the graphs stored in the server, each bound to a model.
// Deltas on one graph are serialised by the graph's lock; scores read under
// its read lock, so a score sees every delta acknowledged before it began
// and never part of one.
type Graphs struct {
	svc  *Service
	opts GraphOptions
	log  *slog.Logger

	// mu guards byID, bytes (the sum of every graph's counted bytes) and
	// loading.
	mu    sync.Mutex
	byID  map[string]*storedGraph
	bytes int64
	// loading is what the LoadGraph streams under way hold (GraphLoad).
	loading int64
	// publishing is set while a gauge update is scheduled (publishSoon).
	publishing atomic.Bool
}

// storedGraph is one graph and what serving knows about it.
type storedGraph struct {
	id string
	// model and version bind the graph: version 0 follows the highest
	// served version of model.
	model   string
	version int64

	// wmu serialises writers (deltas, delete, compaction). g changes only
	// under wmu and mu's write lock together, so a writer holding wmu reads
	// g without mu: validating a delta and the store's fsync block no
	// score; only the in-memory apply takes mu's write lock.
	wmu sync.Mutex
	// mu: write lock to change g, read lock for scores, gets, exports.
	mu sync.RWMutex
	g  *graphs.Graph
	// counted is what g counts in Graphs.bytes: written under gs.mu (and
	// wmu), read by GetGraph under mu alone, so atomic.
	counted atomic.Int64
	// deleted is set under wmu and mu.
	deleted bool
	// scorer serves scoresVersion's scores (nil: none built yet).
	scorer        graphs.Scorer
	scorerVersion int64
	scorerSHA     string
	mode          string
	// logBytes is the delta bytes logged since the last snapshot,
	// snapBytes that snapshot's size.
	logBytes, snapBytes int64
	compacting          atomic.Bool
	// compaction is the snapshot write in flight; DeleteGraph waits for it,
	// so it cannot land on a new graph of the same id.
	compaction sync.WaitGroup

	// revMu guards revCh, which is closed (and cleared) when the revision
	// changes or the graph is deleted: scores waiting for a min_revision
	// wait on it.
	revMu sync.Mutex
	revCh chan struct{}
}

// changed wakes the scores waiting for a revision (after a delta, or the
// graph's deletion).
func (sg *storedGraph) changed() {
	sg.revMu.Lock()
	if sg.revCh != nil {
		close(sg.revCh)
		sg.revCh = nil
	}
	sg.revMu.Unlock()
}

// nextChange returns a channel closed at the graph's next change.
func (sg *storedGraph) nextChange() <-chan struct{} {
	sg.revMu.Lock()
	defer sg.revMu.Unlock()
	if sg.revCh == nil {
		sg.revCh = make(chan struct{})
	}
	return sg.revCh
}

// overhead is what sg counts beside its content (GraphOverhead).
func (sg *storedGraph) overhead() int64 { return GraphOverhead + int64(len(sg.id)) }

// graphMeta is what the store keeps beside a graph's data.
type graphMeta struct {
	Model      string `json:"model"`
	Version    int64  `json:"version,omitempty"`
	FeatureDim int    `json:"feature_dim"`
}

// NewGraphs returns the stored graphs of svc, recovered from opts.Store
// when set.
func NewGraphs(svc *Service, opts GraphOptions) (*Graphs, error) {
	if opts.SnapshotBytes <= 0 {
		opts.SnapshotBytes = DefaultSnapshotBytes
	}
	if opts.RevisionWait <= 0 {
		opts.RevisionWait = DefaultRevisionWait
	}
	gs := &Graphs{svc: svc, opts: opts, log: svc.Logger(), byID: map[string]*storedGraph{}}
	if opts.Store == nil {
		return gs, nil
	}
	err := opts.Store.Load(func(r store.Record) error {
		sg, err := recoverGraph(r)
		if err != nil {
			return fmt.Errorf("graph %q: %w", r.ID, err)
		}
		sg.counted.Store(sg.bytesLocked())
		gs.byID[r.ID] = sg
		gs.bytes += sg.counted.Load()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recovering stored graphs: %w", err)
	}
	gs.publish()
	return gs, nil
}

func recoverGraph(r store.Record) (*storedGraph, error) {
	var meta graphMeta
	if err := json.Unmarshal(r.Meta, &meta); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	sg := &storedGraph{id: r.ID, model: meta.Model, version: meta.Version, snapBytes: int64(len(r.Snapshot))}
	if len(r.Snapshot) > 0 {
		g, err := graphs.ReadSnapshot(r.Snapshot)
		if err != nil {
			return nil, fmt.Errorf("snapshot at revision %d: %w", r.SnapRev, err)
		}
		sg.g = g
	} else {
		sg.g = graphs.New(meta.FeatureDim)
	}
	for _, e := range r.Log {
		if e.Rev <= sg.g.Revision() {
			continue // folded into the snapshot already
		}
		d, err := graphs.DecodeDelta(e.Delta)
		if err != nil {
			return nil, fmt.Errorf("delta at revision %d: %w", e.Rev, err)
		}
		p, err := sg.g.Prepare(d, graphs.Limits{})
		if err != nil {
			return nil, fmt.Errorf("replaying delta at revision %d: %w", e.Rev, err)
		}
		if p.Revision != e.Rev {
			return nil, fmt.Errorf("delta logged at revision %d replays as revision %d", e.Rev, p.Revision)
		}
		sg.g.Apply(p)
		sg.logBytes += int64(len(e.Delta))
	}
	return sg, nil
}

// publish sets the stored-graph gauges.
func (gs *Graphs) publish() {
	gs.mu.Lock()
	n := len(gs.byID)
	var nodes int
	var edges int64
	list := make([]*storedGraph, 0, n)
	for _, sg := range gs.byID {
		list = append(list, sg)
	}
	bytes := gs.bytes
	gs.mu.Unlock()
	for _, sg := range list {
		sg.mu.RLock()
		nodes += sg.g.NumNodes()
		edges += sg.g.NumEdges()
		sg.mu.RUnlock()
	}
	gs.svc.cfg.Metrics.SetStoredGraphs(n, nodes, edges, bytes)
}

// checkGraphID refuses an id outside [A-Za-z0-9._-]{1,128} or starting
// with a dot.
func checkGraphID(id string) error {
	if id == "" {
		return gcn.Errorf(gcn.KindInvalidArgument, "graph id is empty")
	}
	if len(id) > MaxGraphIDLength {
		return gcn.Errorf(gcn.KindInvalidArgument, "graph id %s... is %d bytes, at most %d", strconv.Quote(id[:32]), len(id), MaxGraphIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok || (i == 0 && c == '.') {
			return gcn.Errorf(gcn.KindInvalidArgument, "graph id %s: byte %d is not allowed (letters, digits, '-', '_' and '.', not first)", quoteShort(id), i)
		}
	}
	return nil
}

func quoteShort(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

func (gs *Graphs) get(id string) (*storedGraph, error) {
	if err := checkGraphID(id); err != nil {
		return nil, err
	}
	gs.mu.Lock()
	sg := gs.byID[id]
	gs.mu.Unlock()
	if sg == nil {
		return nil, gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	return sg, nil
}

// receptiveField reads a model's receptive field, or refuses the model for
// stored graphs (FailedPrecondition naming the metadata key).
func receptiveField(name string, info gcn.Info) (int, error) {
	v, ok := info.Metadata[gcn.MetadataReceptiveField]
	if !ok {
		return 0, gcnerr.New(gcnerr.FailedPrecondition, "model %q has no %q metadata: stored graphs need to know how many hops the model reads", name, gcn.MetadataReceptiveField)
	}
	k, err := strconv.Atoi(v)
	if err != nil || k < 0 || k > 64 {
		return 0, gcnerr.New(gcnerr.FailedPrecondition, "model %q: metadata %q is %q, want a number of layers in [0, 64]", name, gcn.MetadataReceptiveField, v)
	}
	return k, nil
}

// createGraph creates graph id bound to model (empty: the default model)
// and version (empty: follow its highest served version), loaded with
// initial (nil: empty) as its revision 1. The model must declare its
// receptive field.
func (gs *Graphs) createGraph(ctx context.Context, id, model, version string, initial *graphs.Delta) (GraphInfo, error) {
	if err := checkGraphID(id); err != nil {
		return GraphInfo{}, err
	}
	lease, err := gs.svc.Acquire(model, version)
	if err != nil {
		return GraphInfo{}, err
	}
	info := lease.Model.Info()
	name := lease.Name
	lease.Release()
	if _, err := receptiveField(name, info); err != nil {
		return GraphInfo{}, err
	}
	pinned, _ := ParseVersion(version)
	sg := &storedGraph{id: id, model: name, version: pinned, g: graphs.New(info.FeatureDim)}

	// Reserve the id first, so two creates of one id cannot both win.
	gs.mu.Lock()
	if _, exists := gs.byID[id]; exists {
		gs.mu.Unlock()
		return GraphInfo{}, gcnerr.New(gcnerr.AlreadyExists, "graph %q exists (DeleteGraph it first)", id)
	}
	sg.wmu.Lock()
	sg.mu.Lock()
	sg.deleted = true // not visible as a graph until loaded
	gs.byID[id] = sg
	gs.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			gs.mu.Lock()
			delete(gs.byID, id)
			gs.mu.Unlock()
		}
		sg.mu.Unlock()
		sg.wmu.Unlock()
	}()

	// Loading is revision 1, an empty graph too.
	if initial == nil {
		initial = &graphs.Delta{}
	}
	// Refuse a graph over the budget before building it (an upper bound),
	// then count what it really holds.
	if err := gs.account(sg, sg.overhead()+deltaGrowth(sg.g, initial)); err != nil {
		return GraphInfo{}, err
	}
	p, err := sg.g.Prepare(initial, gs.limits())
	if err != nil {
		gs.account(sg, 0)
		return GraphInfo{}, err
	}
	sg.g.Apply(p)
	if err := gs.account(sg, sg.bytesLocked()); err != nil {
		gs.account(sg, 0)
		return GraphInfo{}, err
	}
	if gs.opts.Store != nil {
		meta, _ := json.Marshal(graphMeta{Model: name, Version: pinned, FeatureDim: info.FeatureDim})
		snap := sg.g.AppendSnapshot(make([]byte, 0, sg.g.SnapshotSize()))
		start := time.Now()
		err := gs.opts.Store.Create(id, meta, sg.g.Revision(), snap)
		gs.svc.cfg.Metrics.GraphStoreWrite("create", time.Since(start))
		if err != nil {
			gs.account(sg, 0)
			return GraphInfo{}, fmt.Errorf("storing graph %q: %w", id, err)
		}
		sg.snapBytes = int64(len(snap))
	}
	ok = true
	sg.deleted = false
	out := sg.infoLocked()
	go gs.publish()
	return out, nil
}

func (gs *Graphs) limits() graphs.Limits {
	return graphs.Limits{MaxNodes: gs.svc.cfg.MaxNodes, MaxEdges: int64(gs.svc.cfg.MaxEdges)}
}

// account sets sg's counted bytes to n, refusing growth past MaxBytes
// (TooLarge naming the budget). sg.wmu is held.
func (gs *Graphs) account(sg *storedGraph, n int64) error {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if grow := n - sg.counted.Load(); grow > 0 && gs.opts.MaxBytes > 0 && gs.bytes+gs.loading+grow > gs.opts.MaxBytes {
		return gcn.Errorf(gcn.KindTooLarge, "stored graphs would hold %d bytes, the budget is %d (--max-graph-bytes); graph %q needs %d more",
			gs.bytes+gs.loading+grow, gs.opts.MaxBytes, sg.id, grow)
	}
	gs.bytes += n - sg.counted.Load()
	sg.counted.Store(n)
	return nil
}

func (sg *storedGraph) modelLabel() string {
	if sg.version > 0 {
		return sg.model + " version " + strconv.FormatInt(sg.version, 10)
	}
	return sg.model
}

// GraphInfo describes a stored graph (GetGraph, ListGraphs).
type GraphInfo struct {
	ID       string
	Nodes    int
	Edges    int64
	Bytes    int64
	Revision uint64
	// Model is the bound model; Version the pinned version ("" follows the
	// highest served).
	Model, Version string
	// Mode is ModeIncremental or ModeRecompute.
	Mode string
}

func (sg *storedGraph) infoLocked() GraphInfo {
	v := ""
	if sg.version > 0 {
		v = strconv.FormatInt(sg.version, 10)
	}
	mode := sg.mode
	if mode == "" {
		mode = ModeRecompute
	}
	return GraphInfo{ID: sg.id, Nodes: sg.g.NumNodes(), Edges: sg.g.NumEdges(), Bytes: sg.counted.Load(),
		Revision: sg.g.Revision(), Model: sg.model, Version: v, Mode: mode}
}

// GetGraph describes graph id.
func (gs *Graphs) GetGraph(id string) (GraphInfo, error) {
	sg, err := gs.get(id)
	if err != nil {
		return GraphInfo{}, err
	}
	gs.prepareScorer(sg)
	sg.mu.RLock()
	defer sg.mu.RUnlock()
	if sg.deleted {
		return GraphInfo{}, gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	return sg.infoLocked(), nil
}

// ListGraphs describes every stored graph, in id order.
func (gs *Graphs) ListGraphs() []GraphInfo {
	gs.mu.Lock()
	list := make([]*storedGraph, 0, len(gs.byID))
	for _, sg := range gs.byID {
		list = append(list, sg)
	}
	gs.mu.Unlock()
	out := make([]GraphInfo, 0, len(list))
	for _, sg := range list {
		sg.mu.RLock()
		if !sg.deleted {
			out = append(out, sg.infoLocked())
		}
		sg.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b GraphInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// DeleteGraph deletes graph id, from the store too.
func (gs *Graphs) DeleteGraph(id string) error {
	sg, err := gs.get(id)
	if err != nil {
		return err
	}
	sg.wmu.Lock()
	defer sg.wmu.Unlock()
	if sg.deleted {
		return gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	sg.compaction.Wait()
	if gs.opts.Store != nil {
		t := time.Now()
		err := gs.opts.Store.Delete(id)
		gs.svc.cfg.Metrics.GraphStoreWrite("delete", time.Since(t))
		if err != nil {
			return fmt.Errorf("deleting graph %q from the store: %w", id, err)
		}
	}
	sg.mu.Lock()
	sg.deleted = true
	sg.mu.Unlock()
	sg.changed()
	gs.account(sg, 0)
	gs.mu.Lock()
	delete(gs.byID, id)
	gs.mu.Unlock()
	go gs.publish()
	return nil
}

// ExportGraph calls start with the graph's info, then nodes with the
// graph's nodes, then edges with its edges, in batches of at most batch,
// all at one revision (returned). The batches alias a buffer reused
// between calls: encode them before returning.
//
// The graph is encoded (its compact snapshot form) under its read lock,
// and the lock is let go before the first batch: a client that reads
// slowly, or never, holds no lock, so deltas and scores of the graph go on.
// The encoded copy is counted in the request budget (--max-inflight-bytes)
// until the export ends; the transports cut off a client that stops
// reading (SendTimeout).
func (gs *Graphs) ExportGraph(ctx context.Context, id string, batch int, start func(GraphInfo) error, nodes func([]graphs.Node) error, edges func([]graphs.Edge) error) (GraphInfo, error) {
	sg, err := gs.get(id)
	if err != nil {
		return GraphInfo{}, err
	}
	sg.mu.RLock()
	size := int64(sg.g.SnapshotSize()) + 24*int64(sg.g.NumSlots())
	deleted := sg.deleted
	sg.mu.RUnlock()
	if deleted {
		return GraphInfo{}, gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	if b := gs.svc.cfg.Budget; b != nil {
		res, err := b.Reserve(ctx, min(size, b.Bytes()))
		if err != nil {
			return GraphInfo{}, err
		}
		defer res.Release()
	}
	sg.mu.RLock()
	if sg.deleted {
		sg.mu.RUnlock()
		return GraphInfo{}, gcn.Errorf(gcn.KindNotFound, "no stored graph %q", id)
	}
	info := sg.infoLocked()
	snap := sg.g.AppendSnapshot(make([]byte, 0, sg.g.SnapshotSize()))
	sg.mu.RUnlock()
	if err := start(info); err != nil {
		return GraphInfo{}, err
	}
	if err := graphs.ExportSnapshot(snap, batch, nodes, edges); err != nil {
		return GraphInfo{}, err
	}
	return info, nil
}

// SendTimeout is GraphOptions.SendTimeout: how long an export chunk may
// wait for its client (0: no limit).
func (gs *Graphs) SendTimeout() time.Duration { return gs.opts.SendTimeout }

// MemoryOnly reports whether graphs live in memory only (no store).
func (gs *Graphs) MemoryOnly() bool { return gs.opts.Store == nil }

// Close waits for the snapshot writes in flight. Call it before closing
// the store; no other method may be called after.
func (gs *Graphs) Close() {
	gs.mu.Lock()
	list := make([]*storedGraph, 0, len(gs.byID))
	for _, sg := range gs.byID {
		list = append(list, sg)
	}
	gs.mu.Unlock()
	for _, sg := range list {
		sg.compaction.Wait()
	}
}
