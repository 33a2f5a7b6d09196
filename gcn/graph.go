package gcn

import (
	"context"
	"runtime"

	"github.com/gcnserve/gcnserve/graph"
	"github.com/gcnserve/gcnserve/internal/graphcheck"
)

// Tensors is a graph in the model's own input form, for callers that
// already hold arrays: Predict reads them in place, without a copy.
type Tensors struct {
	// NumNodes is N.
	NumNodes int
	// Features is x, row-major [N, F]: node i's features are
	// Features[i*F : (i+1)*F].
	Features []float32
	// EdgeIndex is edge_index, row-major [2, E]: the E source node indexes,
	// then the E target node indexes, each in [0, N).
	EdgeIndex []int64
}

// NumEdges is E.
func (t Tensors) NumEdges() int { return len(t.EdgeIndex) / 2 }

// check validates t for a model with featureDim features. Messages name the
// tensor ("x", "edge_index") as the model contract and the Open Inference
// Protocol call them.
func (t Tensors) check(featureDim int, lim Limits) error {
	n, e := t.NumNodes, len(t.EdgeIndex)/2
	switch {
	case n < 0:
		return Errorf(KindInvalidArgument, "x: negative node count %d", n)
	case len(t.Features) != n*featureDim:
		return Errorf(KindInvalidArgument, "x: %d values for %d nodes, want %d (%d features per node)",
			len(t.Features), n, n*featureDim, featureDim)
	case len(t.EdgeIndex)%2 != 0:
		return Errorf(KindInvalidArgument, "edge_index: %d values, want 2 per edge (shape [2, E])", len(t.EdgeIndex))
	case lim.MaxNodes > 0 && n > lim.MaxNodes:
		return Errorf(KindTooLarge, "graph has %d nodes, limit is %d", n, lim.MaxNodes)
	case lim.MaxEdges > 0 && e > lim.MaxEdges:
		return Errorf(KindTooLarge, "graph has %d edges, limit is %d", e, lim.MaxEdges)
	}
	if j := firstInHalves(len(t.EdgeIndex), func(lo, hi int) int { return firstOutOfRange(t.EdgeIndex[lo:hi], n) }); j >= 0 {
		return Errorf(KindInvalidArgument, "edge_index[%d][%d] = %d is not a node index in [0, %d)", j/e, j%e, t.EdgeIndex[j], n)
	}
	// Predict runs this on every call, and a Cora-sized x has 4M values: a
	// test per value cost about as much as the model run.
	if k := firstInHalves(len(t.Features), func(lo, hi int) int { return graphcheck.FirstNonFinite(t.Features[lo:hi]) }); k >= 0 {
		f := t.Features[k]
		return Errorf(KindInvalidArgument, "x[%d][%d] is %s (features must be finite)", k/featureDim, k%featureDim, graphcheck.NonFiniteName(f))
	}
	return nil
}

// halvesFrom is the length from which firstInHalves searches both halves
// at once: a pass runs at several GB/s, so below about a million values a
// second goroutine costs more than it saves.
const halvesFrom = 1 << 20

// firstInHalves returns first(0, n) for a search first(lo, hi) that returns
// the index, relative to lo, of the first hit in [lo, hi), or -1. From
// halvesFrom values on, with two cores, it searches both halves at once;
// the answer is the same: the first half's hit, else the second's.
func firstInHalves(n int, first func(lo, hi int) int) int {
	if n < halvesFrom || runtime.GOMAXPROCS(0) < 2 {
		return first(0, n)
	}
	mid := n / 2
	second := make(chan int, 1)
	go func() { second <- first(mid, n) }()
	if k := first(0, mid); k >= 0 {
		<-second
		return k
	}
	if k := <-second; k >= 0 {
		return mid + k
	}
	return -1
}

// firstOutOfRange returns the index of the first value of index outside
// [0, n), or -1. It compares as unsigned (a negative value wraps above n)
// and keeps the loop free of early exits, four values at a time, so it runs
// at memory speed; only a block holding a bad value is searched again.
func firstOutOfRange(index []int64, n int) int {
	const block = 4096
	limit := uint64(n)
	for from := 0; from < len(index); from += block {
		vs := index[from:min(from+block, len(index))]
		var hi uint64
		for len(vs) >= 4 {
			hi = max(hi, uint64(vs[0]), uint64(vs[1]), uint64(vs[2]), uint64(vs[3]))
			vs = vs[4:]
		}
		for _, v := range vs {
			hi = max(hi, uint64(v))
		}
		if hi < limit {
			continue
		}
		for j, v := range index[from:min(from+block, len(index))] {
			if uint64(v) >= limit {
				return from + j
			}
		}
	}
	return -1
}

// Graph is a graph as Go values, the shape of the gRPC GraphData message:
// nodes with ids and features, edges between ids. It is graph.Graph, the
// type package client uses too: one value serves both.
type Graph = graph.Graph

// Node is one vertex: a unique, non-empty id and exactly Info.FeatureDim
// finite features.
type Node = graph.Node

// Edge links two node ids. The model decides what an edge means (models made
// by scripts/export_onnx.py treat each as one undirected link).
type Edge = graph.Edge

// PredictGraph validates g exactly as the server validates a request (same
// checks, same order, same messages: "node 3 ("n3"): 12 features, model
// wants 34", "edge 17: target "n9" is not a node id") and runs it. Row i of
// the Prediction is g.Nodes[i].
func (m *Model) PredictGraph(ctx context.Context, g Graph) (Prediction, error) {
	// The tensors and the native pass share one scratch from the pool:
	// a large graph's ids, features and edge index are then reused too.
	sc := m.core.scratch.get()
	t, err := graphTensors(&g, m.info.FeatureDim, m.info.Limits, &sc.graph)
	if err != nil {
		m.core.scratch.put(sc)
		return Prediction{}, err
	}
	p, done, err := m.predictIn(ctx, t, sc)
	if done {
		m.core.scratch.put(sc)
	}
	return p, err
}

// graphTensors validates g and builds its tensors in buf (PredictGraph
// without the run).
func graphTensors(g *Graph, featureDim int, lim Limits, buf *graphcheck.Buffers) (Tensors, error) {
	w, err := graphcheck.FromSourceIn(graphSource{g}, featureDim,
		graphcheck.Limits{MaxNodes: lim.MaxNodes, MaxEdges: lim.MaxEdges}, buf)
	if err != nil {
		return Tensors{}, err
	}
	return Tensors{NumNodes: w.NumNodes(), Features: w.Features, EdgeIndex: w.EdgeIndex}, nil
}

// graphSource reads a Graph for graphcheck.FromSource.
type graphSource struct{ g *Graph }

func (s graphSource) NumNodes() int { return len(s.g.Nodes) }
func (s graphSource) NumEdges() int { return len(s.g.Edges) }
func (s graphSource) Node(i int) (string, []float32) {
	n := &s.g.Nodes[i]
	return n.ID, n.Features
}
func (s graphSource) Edge(j int) (string, string) {
	e := &s.g.Edges[j]
	return e.Source, e.Target
}
