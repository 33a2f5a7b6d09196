package incremental

import (
	"fmt"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

// What a changed source does to its neighbours' sums in one batch.
const (
	kindZero          uint8 = iota // contribution unchanged: nothing to push
	kindPush                       // push new - old to every neighbour
	kindBecomePending              // a hub from now on: keep old applied, push nothing
	kindStayPending                // a hub still: delta updated, push nothing
	kindUnpend                     // no longer a hub: push new - applied
)

// Apply brings the state up to date with a batch of changes. topo must
// already reflect the whole batch; a removed node's links arrive as
// EdgeRemoved before its NodeRemoved. An error (a change naming a slot
// outside the topology, an unknown kind, a feature row of the wrong size)
// leaves the state as it was. Large batches use every worker.
func (s *State) Apply(changes []Change) error {
	if !s.split.on {
		return s.apply(changes)
	}
	s.parallelMin = [2]int{parallelWork, splitWork}[s.split.pick()]
	start := time.Now()
	err := s.apply(changes)
	s.split.record(time.Since(start))
	return err
}

func (s *State) apply(changes []Change) error {
	nslots := s.topo.NumSlots()
	if nslots < s.n {
		return fmt.Errorf("incremental: topology has %d slots, fewer than the %d it had", nslots, s.n)
	}
	for i, c := range changes {
		switch c.Kind {
		case EdgeAdded, EdgeRemoved:
			if c.V < 0 || int(c.V) >= nslots {
				return fmt.Errorf("incremental: change %d (%v): endpoint %d outside the %d slots", i, c.Kind, c.V, nslots)
			}
		case NodeAdded, NodeRemoved, FeaturesChanged:
		default:
			return fmt.Errorf("incremental: change %d: unknown kind %v", i, c.Kind)
		}
		if c.U < 0 || int(c.U) >= nslots {
			return fmt.Errorf("incremental: change %d (%v): node %d outside the %d slots", i, c.Kind, c.U, nslots)
		}
		if c.Kind == NodeAdded || c.Kind == FeaturesChanged {
			if s.topo.Live(c.U) {
				if f := s.topo.Features(c.U); len(f) != s.net.FeatureDim {
					return fmt.Errorf("incremental: node slot %d: %d features, model wants %d", c.U, len(f), s.net.FeatureDim)
				}
			}
		}
	}
	// The view no score reads any more, brought up to the published one
	// (the previous batch), then this batch on top, then published.
	w := s.writeView()
	s.catchUp(w, s.views[s.active.Load()])
	growView(w, nslots)
	s.grow(nslots)
	s.bind(w)
	b := &s.batch
	feat := b.feat[:0]
	ep := s.nextEpoch()
	for _, c := range changes {
		switch c.Kind {
		case NodeAdded, NodeRemoved, FeaturesChanged:
			if s.mark[c.U] != ep {
				s.mark[c.U] = ep
				feat = append(feat, c.U)
			}
		}
	}
	b.feat = feat

	// nodes: every slot whose degree may have changed (edge endpoints,
	// added and removed nodes).
	ep = s.nextEpoch()
	nodes, edges := b.nodes[:0], b.edges[:0]
	add := func(v int32) {
		if s.mark[v] != ep {
			s.mark[v] = ep
			nodes = append(nodes, v)
		}
	}
	for _, v := range feat {
		add(v)
	}
	for _, c := range changes {
		if (c.Kind == EdgeAdded || c.Kind == EdgeRemoved) && c.U != c.V {
			sign := 1.0
			if c.Kind == EdgeRemoved {
				sign = -1
			}
			edges = append(edges, signedEdge{c.U, c.V, sign})
			add(c.U)
			add(c.V)
		}
	}
	b.nodes, b.edges = nodes, edges
	for _, v := range nodes {
		s.prevDeg[v] = s.deg[v]
		if s.topo.Live(v) {
			s.deg[v] = 1 + int32(len(s.topo.Neighbors(v)))
		} else {
			s.deg[v] = 0
		}
	}
	// The view's links, edited link by link (the pending hubs first, as
	// they are before the batch): the layers push along them.
	for _, e := range edges {
		s.editLink(w, e.u, e.v, e.sign > 0)
		s.editLink(w, e.v, e.u, e.sign > 0)
	}
	b.flipped = b.flipped[:0]
	changed := feat
	for li, l := range s.layers {
		changed = s.applyLayer(li, l, changed, nodes, edges)
	}
	for _, v := range nodes {
		s.prevDeg[v] = s.deg[v]
	}
	// A hub that started or stopped pending moves into or out of the
	// pending prefix of each of its neighbours' lists.
	ep = s.nextEpoch()
	relink := b.relink[:0]
	for _, p := range b.flipped {
		pending := w.last.pend[p] >= 0
		for _, e := range w.links[p] {
			s.repend(w, e.u, p, pending)
			if s.mark[e.u] != ep {
				s.mark[e.u] = ep
				relink = append(relink, e.u)
			}
		}
	}
	for _, v := range nodes {
		if s.mark[v] != ep {
			s.mark[v] = ep
			relink = append(relink, v)
		}
	}
	b.relink = relink
	s.dirtyNodes = append(s.dirtyNodes[:0], relink...)
	s.publish(w)
	return nil
}

// linkIndexMin is the number of distinct neighbours from which a slot's
// links get a position index (view.linkPos): below it a scan of the list
// costs less than a map lookup and its upkeep. linkPosBytes is what Bytes
// counts per indexed link (a Go map's slot, control byte and load factor).
const (
	linkIndexMin = 128
	linkPosBytes = 12
)

// indexLinks maps each neighbour in a to its position.
func indexLinks(a []link) map[int32]int32 {
	m := make(map[int32]int32, len(a))
	for i, e := range a {
		m[e.u] = int32(i)
	}
	return m
}

// setLinkIndexMin indexes from now on the links of every slot with at
// least n distinct neighbours, those that have as many now included (a
// locked State only; tests use it to exercise the index on small graphs).
func (s *State) setLinkIndexMin(n int) {
	s.indexMin = n
	if s.concurrent {
		return
	}
	w := s.views[0]
	for v, a := range w.links {
		if w.linkPos[v] == nil && len(a) >= n {
			w.linkPos[v] = indexLinks(a)
		}
	}
}

// find returns u's position in v's links in w, looking in [lo, hi) (the
// pending prefix or the rest), or hi if u is not there.
func (w *view) find(v, u int32, lo, hi int) int {
	if m := w.linkPos[v]; m != nil {
		if i, ok := m[u]; ok && int(i) >= lo && int(i) < hi {
			return int(i)
		}
		return hi
	}
	a := w.links[v]
	i := lo
	for ; i < hi && a[i].u != u; i++ {
	}
	return i
}

// swapLinks swaps entries i and j of v's links in w, index included.
func (w *view) swapLinks(v int32, i, j int) {
	a := w.links[v]
	a[i], a[j] = a[j], a[i]
	if m := w.linkPos[v]; m != nil {
		m[a[i].u], m[a[j].u] = int32(i), int32(j)
	}
}

// editLink adds one listing of the link v-u to v's links in w, or removes
// one, keeping the pending hubs first. A pending u is looked for in the
// short pending prefix only; a hub's list through its index.
func (s *State) editLink(w *view, v, u int32, add bool) {
	a, k := w.links[v], int(w.npend[v])
	pending := w.last != nil && w.last.pend[u] >= 0
	lo, hi := k, len(a)
	if pending {
		lo, hi = 0, k
	}
	i := w.find(v, u, lo, hi)
	if pending {
		// v's pending part changes (a cached one cannot be brought
		// forward across it); edits of its other links leave it.
		w.linksAt[v] = s.version + 1 // the version publish gives w
	}
	if add {
		if i < hi {
			a[i].m++
			return
		}
		a = append(a, link{u, 1, -1})
		w.links[v] = a
		m := w.linkPos[v]
		if m != nil {
			m[u] = int32(len(a) - 1)
		} else if !s.concurrent && len(a) >= s.indexMin {
			w.linkPos[v] = indexLinks(a)
		}
		if pending {
			a[len(a)-1].k = w.last.pend[u]
			w.swapLinks(v, len(a)-1, k)
			k++
		}
		w.npend[v] = int32(k)
		return
	}
	if i == hi {
		return // not listed: the topology's owner broke the contract
	}
	if a[i].m > 1 {
		a[i].m--
		return
	}
	last := len(a) - 1
	if i < k {
		w.swapLinks(v, i, k-1)
		w.swapLinks(v, k-1, last)
		k--
	} else {
		w.swapLinks(v, i, last)
	}
	if m := w.linkPos[v]; m != nil {
		delete(m, u)
	}
	w.links[v], w.npend[v] = a[:last], int32(k)
}

// repend moves hub p into (pending) or out of the pending prefix of v's
// links in w.
func (s *State) repend(w *view, v, p int32, pending bool) {
	a, k := w.links[v], int(w.npend[v])
	if pending {
		if i := w.find(v, p, k, len(a)); i < len(a) {
			a[i].k = w.last.pend[p]
			w.swapLinks(v, i, k)
			w.npend[v]++
			w.linksAt[v] = s.version + 1
		}
		return
	}
	if i := w.find(v, p, 0, k); i < k {
		w.swapLinks(v, i, k-1)
		w.npend[v]--
		w.linksAt[v] = s.version + 1
	}
}

// nextEpoch starts a new set on mark and touch.
func (s *State) nextEpoch() uint32 {
	s.epoch++
	if s.epoch == 0 {
		clear(s.mark)
		clear(s.touch)
		s.epoch = 1
	}
	return s.epoch
}

// applyLayer updates stored layer li for a batch: changed are the slots
// whose h row must be recomputed (features changed for layer 0, output of
// the layer below changed otherwise), nodes those whose degree may have
// changed, edges the links added (+1) and removed (-1). It returns the
// slots whose output of this layer may have changed (nil for the last
// stored layer: scores read it lazily).
func (s *State) applyLayer(li int, l *layer, changed, nodes []int32, edges []signedEdge) []int32 {
	b := &s.batch
	w := l.width
	lastStored := li == len(s.layers)-1
	lazy := lastStored && s.lazyDegree > 0
	ver := s.version + 1 // the version publish gives this batch
	tmpLen := 2 * s.maxWidth()

	// New h rows, kept aside: the old ones are needed for the old
	// contributions below.
	b.newH = growF32(b.newH, len(changed)*w)
	newH := b.newH
	s.parallelRange(len(changed), len(changed)*w*s.net.Layers[li].In, func(lo, hi int) {
		tmp := make([]float64, tmpLen)
		for i := lo; i < hi; i++ {
			v := changed[i]
			row := newH[i*w : (i+1)*w]
			if !s.topo.Live(v) {
				clear(row)
				continue
			}
			s.transformRow(li, v, row, tmp)
		}
	})
	for i, v := range changed {
		s.rowOf[v] = int32(i)
	}

	// Sources whose contribution may change: new h, and for gcn a new
	// degree (dinv scales the contribution).
	src := changed
	if l.agg == gcn.AggregationGCN {
		ep := s.nextEpoch()
		src = b.src[:0]
		for _, v := range changed {
			s.mark[v] = ep
			src = append(src, v)
		}
		for _, v := range nodes {
			if s.mark[v] != ep {
				s.mark[v] = ep
				src = append(src, v)
			}
		}
		b.src = src
	}

	// What each source pushes: new contribution - the one its neighbours'
	// sums hold.
	b.push = growF64(b.push, len(src)*w)
	b.kind = growU8(b.kind, len(src))
	push, kind := b.push, b.kind
	s.parallelRange(len(src), len(src)*w*4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := src[i]
			p := push[i*w : (i+1)*w]
			hNew := l.h[int(v)*w : int(v+1)*w]
			if r := s.rowOf[v]; r >= 0 {
				hNew = newH[int(r)*w : int(r+1)*w]
			}
			cNew := coef(l.agg, s.deg[v])
			if k := l.pend[v]; k >= 0 {
				applied := l.pendRows[int(k)*2*w : int(k)*2*w+w]
				if !lazy || s.deg[v] <= s.lazyDegree/2 {
					kind[i] = kindUnpend
					for j := range p {
						p[j] = cNew*float64(hNew[j]) - applied[j]
					}
				} else {
					kind[i] = kindStayPending
					delta := l.pendRows[int(k)*2*w+w : int(k+1)*2*w]
					// The delta scores cached as of an earlier version,
					// into the hub's ring of its last pendHistory.
					j := int(k)*pendHistory + int(l.pendCnt[k]%pendHistory)
					copy(l.pendPrev[j*w:(j+1)*w], delta)
					l.pendAt[j] = ver
					l.pendCnt[k]++
					for j := range delta {
						delta[j] = cNew*float64(hNew[j]) - applied[j]
					}
				}
				continue
			}
			cOld := coef(l.agg, s.prevDeg[v])
			hOld := l.h[int(v)*w : int(v+1)*w]
			if lazy && s.deg[v] > s.lazyDegree {
				kind[i] = kindBecomePending
				for j := range p {
					p[j] = cOld * float64(hOld[j])
				}
				continue
			}
			nz := false
			for j := range p {
				p[j] = cNew*float64(hNew[j]) - cOld*float64(hOld[j])
				nz = nz || p[j] != 0
			}
			kind[i] = kindZero
			if nz {
				kind[i] = kindPush
			}
		}
	})

	// Steps 1 and 2, each destination row written only by its owner
	// worker (slot mod P): the links added and removed, with the old
	// contributions of their other end; then the sources' pushes.
	links := s.wv.links
	work := 2 * len(edges)
	for i, v := range src {
		if kind[i] == kindPush || kind[i] == kindUnpend {
			work += len(links[v])
		}
	}
	// P workers, a power of two: worker o owns the rows d with
	// (d >> ownerShift) & (P-1) == o.
	s.split.ops += work * w
	P := 1
	if s.workers > 1 && work*w >= s.parallelMin {
		for P*2 <= s.workers {
			P *= 2
		}
	}
	mask := int32(P - 1)
	for len(b.touched) < P {
		b.touched = append(b.touched, nil)
	}
	// The last stored layer's rows: in a concurrent State they are shared
	// with the published view, and the first write of a batch to a row
	// copies it into the other row of its pair (cow).
	cow := l.rows != nil
	// inPlace: the last stored layer of a locked State, whose rows are
	// written in place and whose touched rows nobody lists.
	inPlace := lastStored && !s.concurrent && l.rows == nil
	ep := s.nextEpoch()
	s.owners(P, func(o int) {
		t := b.touched[o][:0]
		touch := func(d int32) []float64 {
			if lastStored && !s.concurrent {
				// Nothing else reads the list: only refresh candidates
				// are needed, listed each time the row's byte counter
				// wraps (adj counts the wraps below).
				if l.adjLo[d]++; l.adjLo[d] == 0 {
					t = append(t, d)
				}
				return l.sumRow(d)
			}
			l.adj[d]++
			if s.touch[d] != ep {
				s.touch[d] = ep
				t = append(t, d)
				if cow {
					l.cow(d)
				}
			}
			return l.sumRow(d)
		}
		for _, e := range edges {
			if (e.u>>ownerShift)&mask == int32(o) {
				s.addOld(l, touch(e.u), e.v, e.sign)
			}
			if (e.v>>ownerShift)&mask == int32(o) {
				s.addOld(l, touch(e.v), e.u, e.sign)
			}
		}
		// A source pushes the same row to each neighbour: four rows at
		// a time, so that their cache misses overlap (about twice as
		// fast as one row after the other on the arxiv-sized graph).
		var four [4][]float64
		for i, v := range src {
			if kind[i] != kindPush && kind[i] != kindUnpend {
				continue
			}
			p := push[i*w : (i+1)*w]
			n := 0
			for _, e := range links[v] {
				d := e.u
				if (d>>ownerShift)&mask != int32(o) {
					continue
				}
				var row []float64
				if inPlace {
					// touch, inlined for the common case.
					if l.adjLo[d]++; l.adjLo[d] == 0 {
						t = append(t, d)
					}
					row = l.s[int(d)*w : int(d+1)*w]
				} else {
					row = touch(d)
				}
				if e.m != 1 {
					axpyTo(row, float64(e.m), p)
					continue
				}
				four[n] = row
				if n++; n == 4 {
					add4(&four, p)
					n = 0
				}
			}
			for _, row := range four[:n] {
				addTo(row, p)
			}
		}
		b.touched[o] = t
	})

	// Hubs in and out; then the new h rows replace the old.
	for i, v := range src {
		switch kind[i] {
		case kindBecomePending, kindUnpend:
			b.flipped = append(b.flipped, v)
		}
		switch kind[i] {
		case kindBecomePending:
			k := l.allocPending()
			l.pend[v] = k
			// New in its neighbours' prefixes (linksAt): no cached sum
			// holds it.
			for j := range pendHistory {
				l.pendAt[int(k)*pendHistory+j] = ver
			}
			applied := l.pendRows[int(k)*2*w : int(k)*2*w+w]
			delta := l.pendRows[int(k)*2*w+w : int(k+1)*2*w]
			copy(applied, push[i*w:(i+1)*w])
			hNew := l.h[int(v)*w : int(v+1)*w]
			if r := s.rowOf[v]; r >= 0 {
				hNew = newH[int(r)*w : int(r+1)*w]
			}
			cNew := coef(l.agg, s.deg[v])
			for j := range delta {
				delta[j] = cNew*float64(hNew[j]) - applied[j]
			}
		case kindUnpend:
			l.pendFree = append(l.pendFree, l.pend[v])
			l.pend[v] = -1
			l.pendLive--
		}
	}
	for i, v := range changed {
		copy(l.h[int(v)*w:int(v+1)*w], newH[i*w:(i+1)*w])
		s.rowOf[v] = -1
	}
	for _, v := range nodes {
		if s.deg[v] == 0 {
			if cow {
				l.idx[v] = -1
			} else {
				clear(l.sumRow(v))
			}
			l.adj[v] = 0
			l.adjLo[v] = 0
		}
	}

	// Exact refresh of sums that took many adjustments (the drift bound).
	var refreshed [8]int64
	s.owners(P, func(o int) {
		for _, d := range b.touched[o] {
			if inPlace {
				// Listed once per wrap of its byte counter (a row
				// refreshed earlier in this list counts from 0 again:
				// the wrap adds to the bound, not to the error).
				l.adj[d] += refreshCheck
			}
			if int64(l.adj[d]) > refreshBase+refreshPerLink*int64(s.deg[d]) {
				s.sumExact(l, d)
				l.adj[d] = 0
				l.adjLo[d] = 0
				refreshed[o]++
			}
		}
	})
	for _, r := range refreshed {
		s.refreshes += r
	}

	if lastStored {
		// The rows the other view lacks after this batch.
		d := s.dirtyRows[:0]
		for o := range P {
			d = append(d, b.touched[o]...)
		}
		d = append(d, src...)
		d = append(d, nodes...)
		s.dirtyRows = d
		s.dirtyH = append(s.dirtyH[:0], changed...)
		if s.concurrent {
			for o := range P {
				s.rowsCopied += int64(len(b.touched[o]))
			}
		}
		if l.rows != nil {
			l.chunks = l.rows.chunks
		}
		return nil
	}
	// The slots whose output of this layer may have changed: a new sum,
	// a new h row, a new degree.
	ep = s.nextEpoch()
	next := b.next[:0]
	add := func(v int32) {
		if s.mark[v] != ep {
			s.mark[v] = ep
			next = append(next, v)
		}
	}
	for o := range P {
		for _, d := range b.touched[o] {
			add(d)
		}
	}
	for _, v := range changed {
		add(v)
	}
	for _, v := range nodes {
		add(v)
	}
	// The next layer reads changed while b.next is rebuilt: swap buffers.
	b.next = b.feat
	b.feat = next
	return next
}

// ownerShift: worker o of P owns the rows of the blocks of 64 slots
// numbered o mod P, so that no two workers write one cache line of the
// per-slot byte counters (adjLo).
const ownerShift = 6

// addOld adds sign times u's contribution before this batch to a
// neighbour's sum row.
func (s *State) addOld(l *layer, row []float64, u int32, sign float64) {
	w := l.width
	if k := l.pend[u]; k >= 0 {
		axpyTo(row, sign, l.pendRows[int(k)*2*w:int(k)*2*w+w])
		return
	}
	axpy32To(row, sign*coef(l.agg, s.prevDeg[u]), l.h[int(u)*w:int(u+1)*w])
}

func (l *layer) allocPending() int32 {
	l.pendLive++
	if n := len(l.pendFree); n > 0 {
		k := l.pendFree[n-1]
		l.pendFree = l.pendFree[:n-1]
		return k
	}
	k := int32(len(l.pendRows) / (2 * l.width))
	l.pendRows = append(l.pendRows, make([]float64, 2*l.width)...)
	l.pendPrev = append(l.pendPrev, make([]float64, pendHistory*l.width)...)
	l.pendAt = append(l.pendAt, make([]uint64, pendHistory)...)
	l.pendCnt = append(l.pendCnt, 0)
	return k
}

// owners runs fn(0..P-1) on P goroutines (inline when P is 1).
func (s *State) owners(P int, fn func(o int)) {
	if P == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	for o := range P {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(o)
		}()
	}
	wg.Wait()
}

func growF32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n, n+n/4)
	}
	return b[:n]
}

func growF64(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n, n+n/4)
	}
	return b[:n]
}

func growU8(b []uint8, n int) []uint8 {
	if cap(b) < n {
		return make([]uint8, n, n+n/4)
	}
	return b[:n]
}
