// Package incremental keeps a GCN's per-layer state for one stored graph and
// keeps it exact as the graph changes, so that scoring a few nodes reads
// stored rows instead of recomputing their receptive field.
//
// The model is a gcn.Network (aggregations gcn, mean and sum; transform
// first, h = in @ W; out = act(agg + bias); softmax head) and the graph is
// read through Topology. For every layer but the last, State keeps the
// transformed rows h[v] (float32) and the neighbour sum S[v] (float64) of
// the contributions c[s] the aggregation needs (dinv[s]*h[s] for gcn, h[s]
// for mean and sum); a layer's output for v is then O(width) from
// h[v], S[v] and deg(v). The last layer is never stored: a score aggregates
// the previous layer's outputs over the node's closed neighbourhood and
// multiplies by the last weight (aggregation is linear, so this is exact),
// which keeps every change at one hop from where it happened in a 2-layer
// model. docs/INCREMENTAL.md has the algorithm, the proof of exactness and
// the drift bound.
package incremental

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

// Topology is the stored graph as the engine reads it. Node indexes are
// stable slots.
type Topology interface {
	// NumSlots is one past the highest slot ever used.
	NumSlots() int
	// Live reports whether slot i holds a node.
	Live(i int32) bool
	// Neighbors lists i's links: one entry per listed link u != v (either
	// direction), duplicates repeated, listed self loops excluded. The
	// slice is read-only and valid until the next change.
	Neighbors(i int32) []int32
	// Features is node i's raw feature row (FeatureDim values).
	Features(i int32) []float32
}

// ChangeKind is what one Change did to the graph.
type ChangeKind uint8

// Change kinds. A removed node's links arrive as EdgeRemoved before its
// NodeRemoved.
const (
	EdgeAdded ChangeKind = iota + 1
	EdgeRemoved
	NodeAdded
	NodeRemoved
	FeaturesChanged
)

func (k ChangeKind) String() string {
	switch k {
	case EdgeAdded:
		return "EdgeAdded"
	case EdgeRemoved:
		return "EdgeRemoved"
	case NodeAdded:
		return "NodeAdded"
	case NodeRemoved:
		return "NodeRemoved"
	case FeaturesChanged:
		return "FeaturesChanged"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one change to the graph: U is the node (or an edge's first
// endpoint), V an edge's second endpoint.
type Change struct {
	Kind ChangeKind
	U, V int32
}

// ErrNotLive is wrapped by Probabilities' error for a slot that holds no
// node.
var ErrNotLive = errors.New("not a live node")

// DefaultLazyDegree is the degree above which a node's contribution to the
// last stored layer is not pushed to its neighbours on every change but
// kept pending and added when a score reads the neighbour (see
// docs/INCREMENTAL.md, "Hubs").
// 128 balances the two costs on the arxiv-sized benchmark graph with 4
// scorers (pushing a degree change costs a cache-missing row write per
// neighbour; a pending hub costs a cached row add per read of each
// neighbour): 256 and 512 apply fewer updates per CPU-second, 64 makes
// scores slower.
const DefaultLazyDegree = 128

// refreshBase and refreshPerLink set when a neighbour sum is recomputed
// exactly: after refreshBase + refreshPerLink*deg incremental adjustments,
// which keeps the refresh cost at most 1/refreshPerLink of the adjustments'
// and bounds the rounding error any sum can carry (docs/INCREMENTAL.md).
// A locked State's last stored layer counts a row's adjustments in a byte
// (adjLo) and checks the row each time the byte wraps, every refreshCheck
// adjustments, so there a refresh comes at most refreshCheck adjustments
// late.
const (
	refreshBase    = 1 << 12
	refreshPerLink = 16
	refreshCheck   = 1 << 8 // adjLo wraps
)

// State is the per-layer state of one graph under one Network. Apply must
// not run concurrently with another Apply (the owner serialises its
// topology changes and Apply calls). Scores (Probabilities) read a view:
// the last stored layer's rows, the degrees and a copy of the adjacency,
// never the topology. A State from New has one view, which Apply writes
// in place: the owner holds a sync.RWMutex (write lock for the topology
// change plus Apply, read lock for scores). A State from NewConcurrent has
// two: scores read the published one without any lock, concurrently with
// Apply, which writes the one readers have left and then publishes it
// (see docs/INCREMENTAL.md, "Concurrent scores"). A one-layer network has
// no stored layer: its scores read the topology's features, so they need
// the owner's read lock in both.
type State struct {
	net     *gcn.Network
	topo    Topology
	weights [][]float64 // per layer, Weight as float64, [In*Out]
	biases  [][]float64 // per layer, Out values (zeros when the layer has none)
	workers int
	// parallelMin is the operation count above which a step is split
	// across workers (parallelWork; tests lower it). Apply sets it by
	// split unless a test turned split off.
	parallelMin int
	split       splitChooser

	// cacheMin: scores cache the output of a slot with at least this
	// many pending neighbours (cacheMinPending; tests lower it).
	cacheMin int32

	// indexMin: a slot's links get a position index (view.linkPos) from
	// this many distinct neighbours on (linkIndexMin; tests lower it
	// with setLinkIndexMin).
	indexMin int

	// lazyDegree: a node of the last stored layer with a degree above it
	// keeps its changes pending; 0 disables pending.
	lazyDegree int32

	n       int    // slots covered by the writer's private arrays
	version uint64 // the last version published (view.version)
	// cachedRows counts the cachedOutput rows scores allocated;
	// broughtForward the cached pending sums brought forward (tests).
	cachedRows, broughtForward atomic.Int64

	wv      *view   // the view Apply writes (bound by bind)
	deg     []int32 // the bound view's: 1 + links for a live slot, 0 for a dead one
	prevDeg []int32 // deg before the batch during Apply; equal to deg otherwise
	// layers: every stored layer; the last one is the bound view's (Apply
	// binds the view it writes, see bind).
	layers []*layer

	// Two views, left-right: readers read views[active]; Apply brings the
	// other up to date with the previous batch (catchUp), applies the new
	// batch to it and publishes it by flipping active. readers[i] counts
	// the scores reading views[i]; Apply writes views[i] only when it is 0.
	views      [2]*view // the same view twice unless concurrent
	concurrent bool
	active     atomic.Int32
	readers    [2]paddedCount
	// waiting is set while Apply waits for the readers of the view it is
	// about to write; the last of them to leave sends on wake.
	waiting atomic.Bool
	wake    chan struct{}
	// scoreSlots admits scores (nil: any number at once); see
	// SetMaxConcurrentScores.
	scoreSlots chan struct{}
	// What the last Apply changed in the view it wrote, which the other
	// view lacks: rows of the last stored layer, and slots whose degree
	// and links changed. dirtyAll: copy everything (after build).
	dirtyRows, dirtyH, dirtyNodes []int32
	dirtyAll                      bool
	drainWaits                    int64
	rowsCopied                    int64
	drainTime                     time.Duration

	// Apply's scratch: only touched under the owner's write lock.
	epoch  uint32
	mark   []uint32 // slot -> epoch it joined the set being built
	touch  []uint32 // slot -> epoch it was touched by a push (written by its owner only)
	rowOf  []int32  // slot -> row of newH during one layer's update, else -1
	batch  batchScratch
	rowBuf sync.Pool // *rowScratch for Probabilities

	// refreshes counts exact recomputations of a neighbour sum (tests).
	refreshes int64
}

// chunkRows rows of an arena are allocated together and never move.
const (
	chunkShift = 12
	chunkRows  = 1 << chunkShift
)

// arena holds the last stored layer's neighbour-sum rows: two per slot,
// rows 2v and 2v+1 (adjacent in memory), of which one is the published
// view's and the other is free for the next batch to write. Only the
// writer grows it; readers reach rows through a view's idx and chunks.
type arena struct {
	w      int
	chunks [][]float64
	// per is the rows per slot: 2 for a concurrent State (NewConcurrent),
	// 1 for one whose owner locks (New: rows written in place).
	per int32
}

// ensure makes room for the rows of n slots.
func (a *arena) ensure(n int) {
	for len(a.chunks)*chunkRows < int(a.per)*n {
		a.chunks = append(a.chunks, make([]float64, chunkRows*a.w))
	}
}

// rowIn is row r of a chunk table for rows of w values.
func rowIn(chunks [][]float64, w int, r int32) []float64 {
	c := chunks[r>>chunkShift]
	o := int(r&(chunkRows-1)) * w
	return c[o : o+w : o+w]
}

// sumRow is v's neighbour-sum row as the writer sees it (nil: v has no row
// in the last stored layer, all zero).
func (l *layer) sumRow(v int32) []float64 {
	w := l.width
	if l.rows == nil {
		return l.s[int(v)*w : int(v+1)*w]
	}
	r := l.idx[v]
	if r < 0 {
		return nil
	}
	return rowIn(l.rows.chunks, w, r)
}

// cow makes v's row writable before its first write in a batch: a slot
// without a row gets a zero one; in a concurrent State the write view gets
// a copy of the row the published view keeps, in the other row of v's
// pair (in a locked State rows are written in place).
func (l *layer) cow(v int32) {
	old := l.idx[v]
	if old < 0 {
		r := l.rows.per * v
		clear(rowIn(l.rows.chunks, l.width, r))
		l.idx[v] = r
		return
	}
	if l.rows.per == 1 {
		return
	}
	r := old ^ 1
	copy(rowIn(l.rows.chunks, l.width, r), rowIn(l.rows.chunks, l.width, old))
	l.idx[v] = r
}

// paddedCount is a counter on its own cache line.
type paddedCount struct {
	n atomic.Int64
	_ [56]byte
}

// view is what a score reads, as of one completed Apply: every slot's
// degree, its links (the state's own copy, kept from the changes, so
// scores never read the topology) and the last stored layer's rows (nil
// for a one-layer network). links[v] lists v's distinct neighbours, each
// once with its multiplicity, pending hub neighbours first, npend[v] of
// them, so a score adds their deltas without scanning the rest and reads
// each neighbour once however many times the link is listed.
type view struct {
	n     int
	deg   []int32
	npend []int32
	links [][]link
	// linkPos[v], for a slot with at least linkIndexMin distinct
	// neighbours in a locked State (nil otherwise), maps each neighbour to
	// its position in links[v], so that Apply edits a hub's list without
	// scanning it (hubs list up to 14,000 neighbours on the arxiv-sized
	// graph; the scan was 7% of the CPU). Only the writer reads it; once
	// made it is kept while the slot's list lives.
	linkPos []map[int32]int32
	last    *layer
	// version numbers the views' states (publish sets it): a cached
	// output is valid only for the version it was computed from.
	version uint64
	// outputs caches the last stored layer's output of slots with at
	// least cacheMinPending pending neighbours, filled by scores (see
	// addOutput).
	outputs []atomic.Pointer[cachedOutput]
	// linksAt[v] is the version at which v's pending prefix last changed
	// (a pending neighbour's link added or removed, a hub moved in or
	// out; edits of its other links leave the pending part as it was, and
	// the hubs' links change in nearly every batch); cacheFloor the version before which no cached
	// pending sum may be brought forward (SetLazyDegree flushes them all).
	linksAt    []uint64
	cacheFloor uint64
}

// cachedOutput is the pending part of one slot's neighbour sum in the
// last stored layer (the sum over its pending hub neighbours of their
// deltas) as of view version: a hub sums hundreds of pending deltas and
// most scores read the same hubs. A later version brings it forward by the
// deltas that changed since (a few per batch), and sums it again after
// cacheRefresh such steps (rounding) or when it cannot.
type cachedOutput struct {
	mu      sync.Mutex
	version uint64 // 0: never computed
	steps   int    // brought forward since last summed
	pending []float64
}

// cacheRefresh bounds the steps a cached pending sum is brought forward by
// before it is summed again: each step adds at most npend rounding errors
// of one delta.
const cacheRefresh = 64

// cacheMinPending is the number of pending neighbours from which a slot's
// output is cached: below it, summing the deltas costs about as much as
// the cache's lock.
const cacheMinPending = 16

// link is one distinct neighbour u of a slot and the number m of listed
// links between them (u != v; the model counts each listing, so m
// multiplies u's contribution). In the pending prefix, k is u's pending
// index (layer.pend[u], fixed while u pends), so a score reaches the delta
// without a lookup; elsewhere k means nothing.
type link struct {
	u, m, k int32
}

// layer is the stored state of one layer that is not the last.
type layer struct {
	agg   gcn.Aggregation
	width int
	h     []float32 // [n*width]: in @ W
	s     []float64 // [n*width]: sum over links of the applied contributions (rows nil: see idx)
	adj   []uint32  // adjustments of s[v] since it was last summed exactly (the views share it)
	// adjLo counts the adjustments of the last stored layer of a locked
	// State modulo refreshCheck (adj then counts the wraps, times
	// refreshCheck): a push reads and writes a byte per destination, in
	// an array a quarter of adj's size that stays in cache, instead of a
	// cache-missing word (about 7% of the writer's CPU).
	adjLo []uint8

	// The last stored layer keeps its sums in rows, shared by the two
	// views: idx[v] is v's row (-1: none, all zero) and chunks this view's
	// copy of the rows' chunk table. Apply never writes a row the
	// published view indexes: it copies it first (cow).
	rows   *arena
	idx    []int32
	chunks [][]float64

	// Pending hubs (the last stored layer only): pend[v] >= 0 indexes two
	// rows in pendRows, the contribution applied to v's neighbours' sums
	// and delta = current contribution - applied.
	pend     []int32
	pendRows []float64 // [k*2*width]
	pendFree []int32
	pendLive int
	// For cached outputs (addOutput): each pending hub k keeps a ring of
	// its last pendHistory changes, pendAt[k*pendHistory+j] the version
	// of one and pendPrev's row k*pendHistory+j the delta before it
	// (pendCnt[k] counts the changes, the next goes to pendCnt[k] mod
	// pendHistory), so a score can bring a cached pending sum from
	// version V forward by the deltas that changed since, as long as the
	// hub changed at most pendHistory times since V.
	pendPrev []float64 // [k*pendHistory*width]
	pendAt   []uint64  // [k*pendHistory]
	pendCnt  []uint32  // [k]
}

type batchScratch struct {
	feat, nodes, src, next []int32
	flipped, relink        []int32 // hubs that started or stopped pending; slots to relink
	edges                  []signedEdge
	newH                   []float32
	push                   []float64
	kind                   []uint8
	touched                [][]int32
}

type signedEdge struct {
	u, v int32
	sign float64
}

// New builds every layer's state for topo from scratch, in parallel over
// GOMAXPROCS cores (at most 4). The State reads topo from then on. Its
// owner serialises Apply against Probabilities (a sync.RWMutex: write lock
// for the topology change plus Apply, read lock for scores): Apply writes
// in place.
func New(net *gcn.Network, topo Topology) (*State, error) {
	return newState(net, topo, false)
}

// NewConcurrent is New for an owner that lets scores run without its lock:
// Probabilities reads a published view while Apply writes the other (see
// State), at the cost of a second copy of the view and of one row copy per
// row a batch changes (docs/INCREMENTAL.md, "Concurrent scores").
func NewConcurrent(net *gcn.Network, topo Topology) (*State, error) {
	return newState(net, topo, true)
}

func newState(net *gcn.Network, topo Topology, concurrent bool) (*State, error) {
	if net == nil {
		return nil, errors.New("incremental: nil network")
	}
	if err := net.Check(); err != nil {
		return nil, fmt.Errorf("incremental: %w", err)
	}
	switch net.InputNorm {
	case gcn.InputNormNone, gcn.InputNormRow:
	default:
		return nil, fmt.Errorf("incremental: input norm %q, want %q or %q", net.InputNorm, gcn.InputNormNone, gcn.InputNormRow)
	}
	if net.Output != gcn.OutputSoftmax {
		return nil, fmt.Errorf("incremental: output %q, want %q", net.Output, gcn.OutputSoftmax)
	}
	s := &State{net: net, topo: topo, workers: min(runtime.GOMAXPROCS(0), 4), parallelMin: parallelWork, split: splitChooser{on: runtime.GOMAXPROCS(0) > 1}, lazyDegree: DefaultLazyDegree, cacheMin: cacheMinPending, indexMin: linkIndexMin}
	for i, l := range net.Layers {
		switch l.Aggregation {
		case gcn.AggregationGCN, gcn.AggregationMean, gcn.AggregationSum:
		default:
			return nil, fmt.Errorf("incremental: layer %d: aggregation %q, want gcn, mean or sum", i, l.Aggregation)
		}
		switch l.Activation {
		case gcn.ActivationNone, gcn.ActivationReLU:
		default:
			return nil, fmt.Errorf("incremental: layer %d: activation %q, want none or relu", i, l.Activation)
		}
		w := make([]float64, len(l.Weight))
		for j, x := range l.Weight {
			w[j] = float64(x)
		}
		b := make([]float64, l.Out)
		for j := range l.Bias {
			b[j] = float64(l.Bias[j])
		}
		s.weights = append(s.weights, w)
		s.biases = append(s.biases, b)
	}
	for i := 0; i < len(net.Layers)-1; i++ {
		s.layers = append(s.layers, &layer{agg: net.Layers[i].Aggregation, width: net.Layers[i].Out})
	}
	// A locked State keeps the last stored layer's sums flat, as the
	// other layers (rows nil).
	var rows *arena
	if k := len(s.layers); k > 0 && concurrent {
		rows = &arena{w: s.layers[k-1].width, per: 2}
	}
	for i := range s.views {
		if i == 1 && !concurrent {
			// One view, written in place under the owner's lock.
			s.views[1] = s.views[0]
			break
		}
		s.views[i] = &view{}
		if k := len(s.layers); k > 0 {
			s.views[i].last = &layer{agg: s.layers[k-1].agg, width: s.layers[k-1].width, rows: rows}
		}
	}
	s.concurrent = concurrent
	s.rowBuf.New = func() any { return &rowScratch{} }
	s.wake = make(chan struct{}, 1)
	if concurrent {
		s.SetMaxConcurrentScores(max(1, runtime.GOMAXPROCS(0)-1))
	}
	s.bind(s.views[0])
	if err := s.build(); err != nil {
		return nil, err
	}
	s.syncView(s.views[1], s.views[0])
	// Versions start at 1: a cached output of version 0 was never
	// computed.
	for _, w := range s.views {
		s.version++
		w.version = s.version
	}
	return s, nil
}

// bind points the writer at view w: deg, the links and the last stored
// layer are w's.
func (s *State) bind(w *view) {
	s.wv = w
	s.deg = w.deg
	if k := len(s.layers); k > 0 {
		s.layers[k-1] = w.last
	}
}

// SetMaxConcurrentScores lets at most n Probabilities calls compute at
// once (n <= 0: no limit); the others wait their turn in order. New sets
// GOMAXPROCS-1 (at least 1), so that scores never hold every core and
// Apply always has one: Go's scheduler shares the cores equally among
// busy goroutines, and scores that never block would leave Apply one
// share among many. Call it before concurrent use.
func (s *State) SetMaxConcurrentScores(n int) {
	if n <= 0 {
		s.scoreSlots = nil
		return
	}
	s.scoreSlots = make(chan struct{}, n)
}

// Ready reports whether Apply would start at once: no score still reads
// the view it writes next. A writer with more changes queued may add them
// to the next Apply instead of waiting (coalescing); call it from the
// goroutine that calls Apply.
func (s *State) Ready() bool {
	return !s.concurrent || s.readers[1-s.active.Load()].n.Load() == 0
}

// writeView returns the view readers are not sent to, once the last of
// them has left it (readers started before the previous publication).
func (s *State) writeView() *view {
	if !s.concurrent {
		return s.views[0]
	}
	i := 1 - s.active.Load()
	if s.readers[i].n.Load() != 0 {
		t := time.Now()
		s.drainWaits++
		for s.readers[i].n.Load() != 0 {
			// The last reader to leave sees waiting and wakes us; a
			// stale wake-up only costs one more look.
			s.waiting.Store(true)
			if s.readers[i].n.Load() == 0 {
				break
			}
			<-s.wake
		}
		s.waiting.Store(false)
		s.drainTime += time.Since(t)
	}
	return s.views[i]
}

// publish sends every score that starts from now on to w.
func (s *State) publish(w *view) {
	s.version++
	w.version = s.version
	if s.views[0] == w {
		s.active.Store(0)
	} else {
		s.active.Store(1)
	}
}

// acquire returns the published view and registers the caller as its
// reader; the caller calls release(i) when done.
func (s *State) acquire() (int32, *view) {
	for {
		i := s.active.Load()
		s.readers[i].n.Add(1)
		if s.active.Load() == i {
			return i, s.views[i]
		}
		// Apply published the other view meanwhile and may already be
		// writing this one: leave it and read the new one.
		s.readers[i].n.Add(-1)
	}
}

func (s *State) release(i int32) {
	if s.readers[i].n.Add(-1) == 0 && s.waiting.Load() {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Stats is what Apply did so far.
type Stats struct {
	// DrainWaits counts the Applies that waited for scores still reading
	// the view they were about to write; Drained is the total wait.
	DrainWaits int64
	Drained    time.Duration
	// RowsCopied counts the last stored layer's sum rows copied before
	// their first write in a batch (the published view keeps the old).
	RowsCopied int64
}

// Stats reports what Apply did so far. Call it from the goroutine that
// calls Apply.
func (s *State) Stats() Stats {
	return Stats{DrainWaits: s.drainWaits, Drained: s.drainTime, RowsCopied: s.rowsCopied}
}

// growView extends w's arrays to n slots (new slots dead).
func growView(w *view, n int) {
	if n <= w.n {
		return
	}
	w.deg = ext32(w.deg, n, 0)
	w.npend = ext32(w.npend, n, 0)
	for len(w.links) < n {
		w.links = append(w.links, nil)
		w.linkPos = append(w.linkPos, nil)
	}
	for len(w.linksAt) < n {
		w.linksAt = append(w.linksAt, 0)
	}
	if len(w.outputs) < n {
		// Only the writer grows a view, and only when no score reads it.
		o := make([]atomic.Pointer[cachedOutput], n+n/4)
		for i := range w.outputs {
			o[i].Store(w.outputs[i].Load())
		}
		w.outputs = o
	}
	if w.last != nil {
		w.last.grow(n)
	}
	w.n = n
}

// syncView makes dst a copy of src.
func (s *State) syncView(dst, src *view) {
	if dst == src {
		return
	}
	growView(dst, src.n)
	copy(dst.deg, src.deg)
	copy(dst.npend, src.npend)
	copy(dst.linksAt, src.linksAt)
	dst.cacheFloor = src.cacheFloor
	for i := range src.n {
		dst.links[i] = append(dst.links[i][:0], src.links[i]...)
	}
	if d, r := dst.last, src.last; d != nil {
		copy(d.h, r.h)
		copy(d.idx, r.idx)
		d.chunks = d.rows.chunks
		d.adj = r.adj
		copy(d.pend, r.pend)
		d.pendRows = append(d.pendRows[:0], r.pendRows...)
		d.pendPrev = append(d.pendPrev[:0], r.pendPrev...)
		d.pendAt = append(d.pendAt[:0], r.pendAt...)
		d.pendCnt = append(d.pendCnt[:0], r.pendCnt...)
		d.pendFree = append(d.pendFree[:0], r.pendFree...)
		d.pendLive = r.pendLive
	}
}

// catchUp brings w (one batch behind) to src: the rows and slots the last
// Apply changed in src.
func (s *State) catchUp(w, src *view) {
	if w == src {
		s.dirtyAll = false
		return
	}
	if s.dirtyAll {
		s.syncView(w, src)
		s.dirtyAll = false
		return
	}
	growView(w, src.n)
	for _, v := range s.dirtyNodes {
		w.deg[v] = src.deg[v]
		w.npend[v] = src.npend[v]
		w.linksAt[v] = src.linksAt[v]
		w.links[v] = append(w.links[v][:0], src.links[v]...)
	}
	if d, r := w.last, src.last; d != nil {
		wd := d.width
		for _, v := range s.dirtyH {
			o := int(v) * wd
			copy(d.h[o:o+wd], r.h[o:o+wd])
		}
		for _, v := range s.dirtyRows {
			d.idx[v] = r.idx[v]
			d.pend[v] = r.pend[v]
		}
		d.chunks = d.rows.chunks
		d.adj = r.adj
		d.pendRows = append(d.pendRows[:0], r.pendRows...)
		d.pendPrev = append(d.pendPrev[:0], r.pendPrev...)
		d.pendAt = append(d.pendAt[:0], r.pendAt...)
		d.pendCnt = append(d.pendCnt[:0], r.pendCnt...)
		d.pendFree = append(d.pendFree[:0], r.pendFree...)
		d.pendLive = r.pendLive
	}
}

// SetLazyDegree sets the degree above which a node's changes to the last
// stored layer stay pending until read (0: never). Call it right after New.
// It is exported for benchmarks; DefaultLazyDegree suits power-law graphs.
func (s *State) SetLazyDegree(d int) {
	s.flushPending()
	clear(s.views[s.active.Load()].npend)
	s.lazyDegree = int32(d)
	s.dirtyAll = true
	for _, w := range s.views {
		s.version++
		w.version = s.version
		w.cacheFloor = s.version // every cached pending sum is stale
	}
}

// Bytes is the memory the state holds (see docs/INCREMENTAL.md for the
// formula).
func (s *State) Bytes() int64 {
	b := int64(cap(s.prevDeg)+cap(s.mark)+cap(s.touch)+cap(s.rowOf)) * 4
	lb := func(l *layer) int64 {
		return int64(cap(l.h))*4 + int64(cap(l.s))*8 + int64(cap(l.idx))*4 + int64(cap(l.pend))*4 + int64(cap(l.adjLo)) +
			int64(cap(l.pendRows)+cap(l.pendPrev)+cap(l.pendAt))*8 + int64(cap(l.pendFree)+cap(l.pendCnt))*4
	}
	for _, l := range s.layers[:max(0, len(s.layers)-1)] {
		b += lb(l)
	}
	for i, w := range s.views {
		if i == 1 && w == s.views[0] {
			break
		}
		b += int64(cap(w.deg)+cap(w.npend))*4 + int64(cap(w.links))*24 + int64(cap(w.outputs)+cap(w.linksAt))*8
		for _, a := range w.links {
			b += int64(cap(a)) * 12
		}
		b += int64(cap(w.linkPos)) * 8
		for _, m := range w.linkPos {
			b += int64(len(m)) * linkPosBytes
		}
		if w.last != nil {
			b += lb(w.last)
		}
	}
	if k := len(s.layers); k > 0 {
		l := s.layers[k-1]
		b += int64(cap(l.adj)) * 4
		if l.rows != nil {
			b += int64(len(l.rows.chunks)) * chunkRows * int64(l.width) * 8
		}
	}
	for _, l := range s.layers[:max(0, len(s.layers)-1)] {
		b += int64(cap(l.adj)) * 4
	}
	for _, w := range s.weights {
		b += int64(len(w)) * 8
	}
	if k := len(s.layers); k > 0 {
		b += s.cachedRows.Load() * int64(56+8*s.layers[k-1].width)
	}
	return b
}

// build sizes the arrays to the topology and computes every stored layer
// from scratch.
func (s *State) build() error {
	n := s.topo.NumSlots()
	s.n = 0
	s.grow(n)
	w := s.views[0]
	growView(w, n)
	s.bind(w)
	pos := make([]int32, n) // u -> its index in the list being built, valid where mark is the epoch
	for i := range n {
		v := int32(i)
		a := w.links[i][:0]
		s.deg[i] = 0
		if s.topo.Live(v) {
			if f := s.topo.Features(v); len(f) != s.net.FeatureDim {
				return fmt.Errorf("incremental: node slot %d: %d features, model wants %d", v, len(f), s.net.FeatureDim)
			}
			ep := s.nextEpoch()
			nb := s.topo.Neighbors(v)
			for _, u := range nb {
				if s.mark[u] == ep {
					a[pos[u]].m++
					continue
				}
				s.mark[u], pos[u] = ep, int32(len(a))
				a = append(a, link{u, 1, -1})
			}
			s.deg[i] = 1 + int32(len(nb))
		}
		w.links[i] = slices.Clip(a)
		w.linkPos[i] = nil
		if !s.concurrent && len(a) >= s.indexMin {
			w.linkPos[i] = indexLinks(a)
		}
		s.prevDeg[i] = s.deg[i]
	}
	for li, l := range s.layers {
		w := l.width
		s.parallelRange(n, n*w*8, func(lo, hi int) {
			tmp := make([]float64, 2*s.maxWidth())
			for i := lo; i < hi; i++ {
				v := int32(i)
				row := l.h[i*w : (i+1)*w]
				if !s.topo.Live(v) {
					clear(row)
					continue
				}
				s.transformRow(li, v, row, tmp)
			}
		})
		if l.rows != nil {
			for i := range n {
				l.idx[i] = l.rows.per * int32(i)
			}
			l.chunks = l.rows.chunks
		}
		s.parallelRange(n, n*w*16, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				s.sumExact(l, int32(i))
				l.adj[i] = 0
				l.adjLo[i] = 0
			}
		})
		for i := range l.pend {
			l.pend[i] = -1
		}
		l.pendRows, l.pendFree, l.pendLive = l.pendRows[:0], l.pendFree[:0], 0
		l.pendPrev, l.pendAt, l.pendCnt = l.pendPrev[:0], l.pendAt[:0], l.pendCnt[:0]
	}
	return nil
}

func (s *State) maxWidth() int {
	m := 0
	for _, l := range s.net.Layers {
		m = max(m, l.In, l.Out)
	}
	return m
}

// grow extends the writer's per-slot arrays and the layers below the last
// stored one to n slots (the views grow with growView).
func (s *State) grow(n int) {
	if n <= s.n {
		return
	}
	s.prevDeg = ext32(s.prevDeg, n, 0)
	s.rowOf = ext32(s.rowOf, n, -1)
	s.mark = extU32(s.mark, n)
	s.touch = extU32(s.touch, n)
	for _, l := range s.layers[:max(0, len(s.layers)-1)] {
		l.grow(n)
	}
	s.n = n
}

// grow extends the layer's rows to n slots (new rows zero, not pending).
func (l *layer) grow(n int) {
	old := len(l.pend)
	if n <= old {
		return
	}
	l.h = append(l.h, make([]float32, (n-old)*l.width)...)
	if l.rows == nil {
		l.s = append(l.s, make([]float64, (n-old)*l.width)...)
	} else {
		l.idx = ext32(l.idx, n, -1)
		l.rows.ensure(n)
	}
	l.adj = extU32(l.adj, n)
	l.adjLo = extU8(l.adjLo, n)
	l.pend = ext32(l.pend, n, -1)
}

func ext32(a []int32, n int, fill int32) []int32 {
	for len(a) < n {
		a = append(a, fill)
	}
	return a
}

func extU8(a []uint8, n int) []uint8 {
	if n <= len(a) {
		return a
	}
	return append(a, make([]uint8, n-len(a))...)
}

func extU32(a []uint32, n int) []uint32 {
	if n <= len(a) {
		return a
	}
	return append(a, make([]uint32, n-len(a))...)
}

// coef is the factor a source's h row is scaled by in its neighbours' sums.
func coef(agg gcn.Aggregation, deg int32) float64 {
	if agg != gcn.AggregationGCN {
		return 1
	}
	if deg <= 0 {
		return 0
	}
	return 1 / math.Sqrt(float64(deg))
}

// sumExact recomputes s[v] from v's links (the bound view's copy).
func (s *State) sumExact(l *layer, v int32) {
	w := l.width
	row := l.sumRow(v)
	if row == nil {
		return
	}
	clear(row)
	for _, e := range s.wv.links[v] {
		u, m := e.u, float64(e.m)
		if k := l.pend[u]; k >= 0 {
			axpyTo(row, m, l.pendRows[int(k)*2*w:int(k)*2*w+w])
			continue
		}
		axpy32To(row, m*coef(l.agg, s.deg[u]), l.h[int(u)*w:int(u+1)*w])
	}
}

// transformRow writes layer li's h row of v: its input row @ Weight. The
// input is the normalised features for layer 0, else the previous stored
// layer's output (without pending hubs: only the last stored layer has
// them). tmp holds at least 2 x max width values.
func (s *State) transformRow(li int, v int32, dst []float32, tmp []float64) {
	L := &s.net.Layers[li]
	in, acc := tmp[:L.In], tmp[L.In:]
	if li == 0 {
		s.inputRow(v, in)
	} else {
		s.outputRow(li-1, v, in)
	}
	matvec(in, s.weights[li], L.Out, dst, acc)
}

// matvec writes x @ W (W row-major [len(x), out]) into dst; acc holds at
// least out values.
func matvec(x, w []float64, out int, dst []float32, acc []float64) {
	a := acc[:out]
	clear(a)
	for k, xk := range x {
		if xk == 0 {
			continue
		}
		row := w[k*out : (k+1)*out]
		for j, wj := range row {
			a[j] += xk * wj
		}
	}
	for j, x := range a {
		dst[j] = float32(x)
	}
}

// inputRow writes v's features after the input normalisation.
func (s *State) inputRow(v int32, dst []float64) {
	f := s.topo.Features(v)
	sum := 0.0
	for j, x := range f {
		dst[j] = float64(x)
		sum += float64(x)
	}
	if s.net.InputNorm == gcn.InputNormRow {
		if sum == 0 {
			clear(dst)
			return
		}
		for j := range dst {
			dst[j] /= sum
		}
	}
}

// outputRow writes stored layer li's output for v: act(agg + bias), from
// the writer's arrays. Only layers below the last stored one are read this
// way (they have no pending slots); scores read the last one through
// viewOutput.
func (s *State) outputRow(li int, v int32, dst []float64) {
	l := s.layers[li]
	w := l.width
	s.activate(li, l, l.h[int(v)*w:int(v+1)*w], l.sumRow(v), s.deg[v], dst)
}

// pendingSum writes v's neighbour sum in the last stored layer as vw
// holds it into sum (at least the layer's width): the stored sum plus the
// pending deltas of v's hub neighbours.
func (s *State) pendingSum(vw *view, v int32, sum []float64) {
	s.storedSum(vw, v, sum)
	s.addPending(vw, v, sum)
}

// storedSum writes v's stored neighbour sum into sum.
func (s *State) storedSum(vw *view, v int32, sum []float64) {
	l := vw.last
	w := l.width
	sum = sum[:w]
	switch {
	case l.rows == nil:
		copy(sum, l.s[int(v)*w:int(v+1)*w])
	case l.idx[v] >= 0:
		copy(sum, rowIn(l.chunks, w, l.idx[v]))
	default:
		clear(sum)
	}
}

// addPending adds the deltas of v's pending hub neighbours to sum, four at
// a time.
func (s *State) addPending(vw *view, v int32, sum []float64) {
	l := vw.last
	w := l.width
	sum = sum[:w]
	var four [4][]float64
	n := 0
	for _, e := range vw.links[v][:vw.npend[v]] {
		delta := l.pendRows[int(e.k)*2*w+w : int(e.k+1)*2*w]
		if e.m != 1 {
			axpyTo(sum, float64(e.m), delta)
			continue
		}
		four[n] = delta
		if n++; n == 4 {
			addSum4(sum, &four)
			n = 0
		}
	}
	for _, d := range four[:n] {
		addTo(sum, d)
	}
}

// addOutput adds scale times the last stored layer's output for v, as vw
// holds it, to acc; sum is scratch of at least the layer's width. The
// pending part of the sum of a slot with many pending neighbours is cached
// and brought forward from version to version (cachedOutput).
func (s *State) addOutput(vw *view, v int32, scale float64, acc, sum []float64) {
	if vw.npend[v] < s.cacheMin {
		s.pendingSum(vw, v, sum)
		s.activateInto(vw, v, scale, acc, sum)
		return
	}
	c := vw.outputs[v].Load()
	if c == nil {
		c = &cachedOutput{pending: make([]float64, vw.last.width)}
		if vw.outputs[v].CompareAndSwap(nil, c) {
			s.cachedRows.Add(1)
		} else {
			c = vw.outputs[v].Load()
		}
	}
	c.mu.Lock()
	if c.version != vw.version {
		if !s.bringForward(vw, v, c) {
			clear(c.pending)
			s.addPending(vw, v, c.pending)
			c.steps = 0
		}
		c.version = vw.version
	}
	s.storedSum(vw, v, sum)
	addTo(sum, c.pending)
	c.mu.Unlock()
	s.activateInto(vw, v, scale, acc, sum)
}

// pendHistory is how many past deltas each pending hub keeps for cached
// pending sums (bringForward): the top hubs change in most batches, and a
// slot a score reads every few batches needs their deltas as of then.
const pendHistory = 8

// deltaAt finds pending hub k's delta as of version V: changed reports
// whether it changed since, and if it did, j is the ring entry whose
// pendPrev row holds the delta at V; ok is false when it changed more
// than pendHistory times since (the delta at V is gone).
func (l *layer) deltaAt(k int32, V uint64) (j int, changed, ok bool) {
	base, c := int(k)*pendHistory, int(l.pendCnt[k])
	j = -1
	for i := 1; i <= pendHistory; i++ {
		e := base + (c-i+2*pendHistory)%pendHistory
		if l.pendAt[e] <= V {
			return j, j >= 0, true
		}
		j = e
	}
	return j, true, false
}

// bringForward updates c (v's pending part as of c.version) to vw's
// version by the deltas that changed since, if it can: v's pending
// prefix unchanged since c.version, each changed hub changed at most
// pendHistory times since, and fewer than cacheRefresh steps taken. c.mu
// is held.
func (s *State) bringForward(vw *view, v int32, c *cachedOutput) bool {
	V := c.version
	if V == 0 || V < vw.cacheFloor || vw.linksAt[v] > V || c.steps >= cacheRefresh {
		return false
	}
	l := vw.last
	w := l.width
	prefix := vw.links[v][:vw.npend[v]]
	for _, e := range prefix {
		if _, _, ok := l.deltaAt(e.k, V); !ok {
			return false
		}
	}
	p := c.pending[:w]
	for _, e := range prefix {
		j, changed, _ := l.deltaAt(e.k, V)
		if !changed {
			continue
		}
		m := float64(e.m)
		delta := l.pendRows[int(e.k)*2*w+w : int(e.k+1)*2*w]
		prev := l.pendPrev[j*w : (j+1)*w]
		for i := range p {
			p[i] += m * (delta[i] - prev[i])
		}
	}
	c.steps++
	s.broughtForward.Add(1)
	return true
}

// storedRow is v's stored neighbour-sum row in vw's last stored layer
// (nil: none, all zero).
func (s *State) storedRow(vw *view, v int32) []float64 {
	l := vw.last
	w := l.width
	switch {
	case l.rows == nil:
		return l.s[int(v)*w : int(v+1)*w]
	case l.idx[v] >= 0:
		return rowIn(l.chunks, w, l.idx[v])
	}
	return nil
}

// addOutputs4 is addOutput for the four slots sc.us (scales sc.sc4), each
// with fewer than cacheMin pending neighbours (no cached part): their
// pending parts first, then one loop over the four h and S rows, so that
// their cache misses overlap as add4's do.
func (s *State) addOutputs4(vw *view, sc *rowScratch, acc []float64) {
	l := vw.last
	w := l.width
	li := len(s.net.Layers) - 2
	if len(sc.zero) < w {
		sc.zero = make([]float64, w)
		for i := range sc.p4 {
			sc.p4[i] = make([]float64, w)
		}
	}
	var h [4][]float32
	var S [4][]float64
	var a, b [4]float64
	for i, u := range sc.us {
		p := sc.p4[i][:w]
		clear(p)
		if vw.npend[u] > 0 {
			s.addPending(vw, u, p)
		}
		h[i] = l.h[int(u)*w : int(u+1)*w]
		if S[i] = s.storedRow(vw, u); S[i] == nil {
			S[i] = sc.zero[:w]
		}
		switch l.agg {
		case gcn.AggregationGCN:
			di := coef(l.agg, vw.deg[u])
			a[i], b[i] = di*di, di
		case gcn.AggregationMean:
			a[i] = 1 / float64(vw.deg[u])
			b[i] = a[i]
		default:
			a[i], b[i] = 1, 1
		}
	}
	bias, acc := s.biases[li][:w], acc[:w]
	h0, h1, h2, h3 := h[0][:w], h[1][:w], h[2][:w], h[3][:w]
	s0, s1, s2, s3 := S[0][:w], S[1][:w], S[2][:w], S[3][:w]
	p0, p1, p2, p3 := sc.p4[0][:w], sc.p4[1][:w], sc.p4[2][:w], sc.p4[3][:w]
	c := sc.sc4
	relu := s.net.Layers[li].Activation == gcn.ActivationReLU
	for j := range acc {
		x0 := a[0]*float64(h0[j]) + b[0]*(s0[j]+p0[j]) + bias[j]
		x1 := a[1]*float64(h1[j]) + b[1]*(s1[j]+p1[j]) + bias[j]
		x2 := a[2]*float64(h2[j]) + b[2]*(s2[j]+p2[j]) + bias[j]
		x3 := a[3]*float64(h3[j]) + b[3]*(s3[j]+p3[j]) + bias[j]
		if relu {
			x0, x1, x2, x3 = max(0, x0), max(0, x1), max(0, x2), max(0, x3)
		}
		acc[j] += c[0]*x0 + c[1]*x1 + c[2]*x2 + c[3]*x3
	}
}

// activateInto adds scale times the last stored layer's output for v to
// acc, from v's neighbour sum sum (pending deltas included).
func (s *State) activateInto(vw *view, v int32, scale float64, acc, sum []float64) {
	l := vw.last
	w := l.width
	li := len(s.net.Layers) - 2
	// The layer's output is act(a*h + b*sum + bias).
	var a, b float64
	switch l.agg {
	case gcn.AggregationGCN:
		di := coef(l.agg, vw.deg[v])
		a, b = di*di, di
	case gcn.AggregationMean:
		a = 1 / float64(vw.deg[v])
		b = a
	default:
		a, b = 1, 1
	}
	h, bias, sum, acc := l.h[int(v)*w:int(v+1)*w], s.biases[li][:w], sum[:w], acc[:w]
	if s.net.Layers[li].Activation == gcn.ActivationReLU {
		for j := range acc {
			acc[j] += scale * max(0, a*float64(h[j])+b*sum[j]+bias[j])
		}
		return
	}
	for j := range acc {
		acc[j] += scale * (a*float64(h[j]) + b*sum[j] + bias[j])
	}
}

// activate writes stored layer li's (l's) output act(agg + bias) of a slot
// with transformed row h, neighbour sum sum and degree d. It reads no
// field of s a writer changes (scores call it concurrently with Apply).
func (s *State) activate(li int, l *layer, h []float32, sum []float64, d int32, dst []float64) {
	w := l.width
	bias := s.biases[li]
	switch l.agg {
	case gcn.AggregationGCN:
		di := coef(l.agg, d)
		self := di * di
		for j := range dst[:w] {
			dst[j] = self*float64(h[j]) + di*sum[j] + bias[j]
		}
	case gcn.AggregationMean:
		inv := 1 / float64(d)
		for j := range dst[:w] {
			dst[j] = (float64(h[j])+sum[j])*inv + bias[j]
		}
	default:
		for j := range dst[:w] {
			dst[j] = float64(h[j]) + sum[j] + bias[j]
		}
	}
	if s.net.Layers[li].Activation == gcn.ActivationReLU {
		for j, x := range dst[:w] {
			if x < 0 {
				dst[j] = 0
			}
		}
	}
}

type rowScratch struct {
	acc, row, pend, z []float64
	// For addOutputs4: four pending parts and a zero row.
	p4   [4][]float64
	zero []float64
	us   [4]int32
	sc4  [4]float64
}

func grown(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

// Probabilities writes the C class probabilities of each node into dst
// (len(nodes)*C values, node by node), as of the last completed Apply. It
// may run concurrently with itself; with Apply only in a State from
// NewConcurrent (see State).
func (s *State) Probabilities(nodes []int32, dst []float32) error {
	C := s.net.NumClasses()
	if len(dst) != len(nodes)*C {
		return fmt.Errorf("incremental: dst has %d values, want %d nodes x %d classes", len(dst), len(nodes), C)
	}
	if s.scoreSlots != nil {
		s.scoreSlots <- struct{}{}
		defer func() { <-s.scoreSlots }()
	}
	vi, vw := s.acquire()
	defer s.release(vi)
	for i, v := range nodes {
		if v < 0 || int(v) >= vw.n || vw.deg[v] == 0 {
			return fmt.Errorf("incremental: node %d: slot %d: %w", i, v, ErrNotLive)
		}
	}
	sc := s.rowBuf.Get().(*rowScratch)
	defer s.rowBuf.Put(sc)
	last := len(s.net.Layers) - 1
	L := &s.net.Layers[last]
	sc.acc = grown(sc.acc, L.In)
	sc.row = grown(sc.row, L.In)
	sc.pend = grown(sc.pend, L.In)
	sc.z = grown(sc.z, L.Out)
	for i, v := range nodes {
		s.scoreNode(vw, v, sc)
		out := dst[i*C : (i+1)*C]
		softmax(sc.z, out)
	}
	return nil
}

// scoreNode computes the last layer's output for v into sc.z from vw.
func (s *State) scoreNode(vw *view, v int32, sc *rowScratch) {
	last := len(s.net.Layers) - 1
	L := &s.net.Layers[last]
	acc := sc.acc
	clear(acc)
	// acc = sum over v and its links of scale x the input row: for gcn
	// dinv[u] per listing (and dinv[v] once more below), else 1.
	// Slots without a cached pending part go four at a time
	// (addOutputs4), the rest one by one.
	n4 := 0
	add := func(u int32, scale float64) {
		if last == 0 {
			s.inputRow(u, sc.row)
			axpyTo(acc, scale, sc.row)
			return
		}
		if vw.npend[u] >= s.cacheMin {
			s.addOutput(vw, u, scale, acc, sc.pend)
			return
		}
		sc.us[n4], sc.sc4[n4] = u, scale
		if n4++; n4 == 4 {
			s.addOutputs4(vw, sc, acc)
			n4 = 0
		}
	}
	gcnAgg := L.Aggregation == gcn.AggregationGCN
	dv := vw.deg[v]
	if gcnAgg {
		add(v, coef(L.Aggregation, dv))
	} else {
		add(v, 1)
	}
	for _, e := range vw.links[v] {
		scale := float64(e.m)
		if gcnAgg {
			scale *= coef(L.Aggregation, vw.deg[e.u])
		}
		add(e.u, scale)
	}
	for i := range n4 {
		s.addOutput(vw, sc.us[i], sc.sc4[i], acc, sc.pend)
	}
	switch L.Aggregation {
	case gcn.AggregationGCN:
		dinv := coef(L.Aggregation, dv)
		for j := range acc {
			acc[j] *= dinv
		}
	case gcn.AggregationMean:
		inv := 1 / float64(dv)
		for j := range acc {
			acc[j] *= inv
		}
	}
	z := sc.z
	copy(z, s.biases[last])
	W := s.weights[last]
	for k, x := range acc {
		if x == 0 {
			continue
		}
		for j, wj := range W[k*L.Out : (k+1)*L.Out] {
			z[j] += x * wj
		}
	}
	if L.Activation == gcn.ActivationReLU {
		for j, x := range z {
			if x < 0 {
				z[j] = 0
			}
		}
	}
}

func softmax(z []float64, dst []float32) {
	m := math.Inf(-1)
	for _, x := range z {
		m = max(m, x)
	}
	sum := 0.0
	for _, x := range z {
		sum += math.Exp(x - m)
	}
	for j, x := range z {
		dst[j] = float32(math.Exp(x-m) / sum)
	}
}

// parallelRange runs fn over [0,n) split across the workers when work (a
// rough count of operations) is worth it, else in the calling goroutine.
func (s *State) parallelRange(n, work int, fn func(lo, hi int)) {
	s.split.ops += work
	p := s.workers
	if p <= 1 || work < s.parallelMin || n < 2 {
		fn(0, n)
		return
	}
	p = min(p, n)
	var wg sync.WaitGroup
	for w := range p {
		lo, hi := n*w/p, n*(w+1)/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// parallelWork is the operation count above which a step is split across
// cores (New's build; batches of about 2,000 updates on the arxiv-sized
// graph). Below it one goroutine does the step: splitting a batch of 100
// (0.25M operations, under a millisecond) cost 60% more CPU per update and
// took longer, not shorter, on the shared 2-core machine with scorers
// running (28,000-36,000 against 49,000-52,000 updates/s in alternating
// runs): each worker scans every source's links, and the second worker
// waits for a core the scorers or other processes hold
// (docs/INCREMENTAL.md, "Parallelism").
const parallelWork = 1 << 22

// flushPending pushes every pending hub's delta to its neighbours.
func (s *State) flushPending() {
	for _, l := range s.layers {
		if l.pendLive == 0 {
			continue
		}
		w := l.width
		for v := range l.pend {
			k := l.pend[v]
			if k < 0 {
				continue
			}
			delta := l.pendRows[int(k)*2*w+w : int(k+1)*2*w]
			for _, e := range s.wv.links[v] {
				u := e.u
				if l.rows != nil && l.idx[u] < 0 {
					l.cow(u)
				}
				axpyTo(l.sumRow(u), float64(e.m), delta)
				l.adj[u]++
			}
			l.pend[v] = -1
		}
		l.pendRows, l.pendFree, l.pendLive = l.pendRows[:0], l.pendFree[:0], 0
		l.pendPrev, l.pendAt, l.pendCnt = l.pendPrev[:0], l.pendAt[:0], l.pendCnt[:0]
		if l.rows != nil {
			l.chunks = l.rows.chunks
		}
	}
}
