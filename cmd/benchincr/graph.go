package main

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/incremental"
)

// graph is the benchmark's stored graph: adjacency lists with swap-remove
// (an incremental.Topology), the list of edges for drawing one to delete,
// and the Chung-Lu sampler new edges come from. Every node stays live: the
// stream changes edges and features.
type graph struct {
	F   int
	adj [][]int32
	// adjEdge[u][j] is the index in edges of the edge listed at adj[u][j],
	// and each edge knows its two positions, so that removing an edge is
	// O(1) (a search of a hub's list was 5% of the run's CPU, in the
	// harness's own graph and not in the engine).
	adjEdge [][]int32
	feat    []float32 // [n*F]
	edges   []edge
	cum     []float64 // cumulative Chung-Lu weights
}

// edge is one listed edge u-v (u != v), at adj[u][pu] and adj[v][pv].
type edge struct{ u, v, pu, pv int32 }

func (g *graph) NumSlots() int              { return len(g.adj) }
func (g *graph) Live(i int32) bool          { return int(i) < len(g.adj) }
func (g *graph) Neighbors(i int32) []int32  { return g.adj[i] }
func (g *graph) Features(i int32) []float32 { return g.feat[int(i)*g.F : int(i+1)*g.F] }

var _ incremental.Topology = (*graph)(nil)

// newGraph builds a Chung-Lu graph: node i (0-based) has weight
// (i+1)^(-1/(gamma-1)); each of m edges draws both endpoints independently
// with probability proportional to weight, redrawing a self loop (so the
// expected degree of i is proportional to its weight and the degree
// distribution has a power-law tail of exponent gamma). Duplicate edges are
// kept (the model's multigraph semantics count them twice). Features are
// uniform in [-1, 1). Everything comes from one PCG seeded with seed.
func newGraph(rng *rand.Rand, n, m, F int, gamma float64) *graph {
	g := &graph{F: F, adj: make([][]int32, n), adjEdge: make([][]int32, n), feat: make([]float32, n*F), cum: make([]float64, n)}
	alpha := 1 / (gamma - 1)
	sum := 0.0
	for i := range n {
		sum += math.Pow(float64(i+1), -alpha)
		g.cum[i] = sum
	}
	for i := range g.feat {
		g.feat[i] = float32(rng.Float64()*2 - 1)
	}
	for range m {
		u, v := g.draw(rng), g.draw(rng)
		for u == v {
			v = g.draw(rng)
		}
		g.addEdge(u, v)
	}
	return g
}

// draw picks a node with probability proportional to its weight.
func (g *graph) draw(rng *rand.Rand) int32 {
	x := rng.Float64() * g.cum[len(g.cum)-1]
	return int32(sort.SearchFloat64s(g.cum, x))
}

func (g *graph) addEdge(u, v int32) {
	i := int32(len(g.edges))
	g.edges = append(g.edges, edge{u, v, int32(len(g.adj[u])), int32(len(g.adj[v]))})
	g.adj[u] = append(g.adj[u], v)
	g.adjEdge[u] = append(g.adjEdge[u], i)
	g.adj[v] = append(g.adj[v], u)
	g.adjEdge[v] = append(g.adjEdge[v], i)
}

// removeEdge removes edge i of the list (swap-remove everywhere).
func (g *graph) removeEdge(i int) (u, v int32) {
	e := g.edges[i]
	// drop moves the last entry of x's lists to position p (the edge
	// listed there learns its new position) and shortens them.
	drop := func(x, p int32) {
		a, ae := g.adj[x], g.adjEdge[x]
		last := int32(len(a) - 1)
		k := ae[last]
		a[p], ae[p] = a[last], k
		if m := &g.edges[k]; m.u == x {
			m.pu = p
		} else {
			m.pv = p
		}
		g.adj[x], g.adjEdge[x] = a[:last], ae[:last]
	}
	drop(e.u, e.pu)
	drop(e.v, e.pv)
	last := len(g.edges) - 1
	if i != last {
		m := g.edges[last]
		g.edges[i] = m
		g.adjEdge[m.u][m.pu] = int32(i)
		g.adjEdge[m.v][m.pv] = int32(i)
	}
	g.edges = g.edges[:last]
	return e.u, e.v
}

// randomBatch changes the graph by k updates: 10% a random node's feature
// row redrawn, the rest split evenly between inserting a Chung-Lu edge and
// deleting a uniformly drawn existing edge (so both ends of a change are
// drawn in proportion to degree, as real edge streams are).
func (g *graph) randomBatch(rng *rand.Rand, k int, out []incremental.Change) []incremental.Change {
	out = out[:0]
	for range k {
		r := rng.IntN(20)
		switch {
		case r < 2:
			v := int32(rng.IntN(len(g.adj)))
			row := g.Features(v)
			for j := range row {
				row[j] = float32(rng.Float64()*2 - 1)
			}
			out = append(out, incremental.Change{Kind: incremental.FeaturesChanged, U: v})
		case r < 11:
			u, v := g.draw(rng), g.draw(rng)
			for u == v {
				v = g.draw(rng)
			}
			g.addEdge(u, v)
			out = append(out, incremental.Change{Kind: incremental.EdgeAdded, U: u, V: v})
		default:
			u, v := g.removeEdge(rng.IntN(len(g.edges)))
			out = append(out, incremental.Change{Kind: incremental.EdgeRemoved, U: u, V: v})
		}
	}
	return out
}

// glorotNetwork is a GCN with Glorot-uniform weights and small random
// biases: widths[0] features, ReLU between layers, softmax head.
func glorotNetwork(rng *rand.Rand, widths []int) *gcn.Network {
	net := &gcn.Network{FeatureDim: widths[0], InputNorm: gcn.InputNormNone, Output: gcn.OutputSoftmax}
	for i := 1; i < len(widths); i++ {
		l := gcn.Layer{Aggregation: gcn.AggregationGCN, In: widths[i-1], Out: widths[i], Activation: gcn.ActivationReLU}
		if i == len(widths)-1 {
			l.Activation = gcn.ActivationNone
		}
		a := math.Sqrt(6 / float64(l.In+l.Out))
		l.Weight = make([]float32, l.In*l.Out)
		for j := range l.Weight {
			l.Weight[j] = float32((rng.Float64()*2 - 1) * a)
		}
		l.Bias = make([]float32, l.Out)
		for j := range l.Bias {
			l.Bias[j] = float32((rng.Float64()*2 - 1) * 0.1)
		}
		net.Layers = append(net.Layers, l)
	}
	return net
}

// recompute is the from-scratch baseline and the exactness reference: the
// probabilities of nodes computed in float64 from the features of their
// receptive field only (layer l's output is needed on the closed
// neighbourhood of where layer l+1 needs it; degrees are read from the
// adjacency lists), as a server without per-layer state would per score.
type recompute struct {
	net  *gcn.Network
	g    *graph
	mark []uint32
	pos  []int32
	ep   uint32
}

func newRecompute(net *gcn.Network, g *graph) *recompute {
	return &recompute{net: net, g: g, mark: make([]uint32, len(g.adj)), pos: make([]int32, len(g.adj))}
}

// closed returns the closed neighbourhood of set.
func (r *recompute) closed(set []int32) []int32 {
	r.ep++
	var out []int32
	add := func(v int32) {
		if r.mark[v] != r.ep {
			r.mark[v] = r.ep
			out = append(out, v)
		}
	}
	for _, v := range set {
		add(v)
	}
	for _, v := range set {
		for _, u := range r.g.adj[v] {
			add(u)
		}
	}
	return out
}

// probabilities returns C values per node of nodes.
func (r *recompute) probabilities(nodes []int32) [][]float64 {
	L := len(r.net.Layers)
	need := make([][]int32, L+1)
	need[L] = nodes
	for l := L - 1; l >= 0; l-- {
		need[l] = r.closed(need[l+1])
	}
	// in: layer l's input rows on need[l], indexed through pos.
	in := make([][]float64, len(need[0]))
	for i, v := range need[0] {
		row := make([]float64, r.g.F)
		for j, x := range r.g.Features(v) {
			row[j] = float64(x)
		}
		in[i] = row
	}
	for l, layer := range r.net.Layers {
		for i, v := range need[l] {
			r.pos[v] = int32(i)
		}
		h := make([][]float64, len(need[l]))
		for i := range need[l] {
			row := make([]float64, layer.Out)
			for k, x := range in[i] {
				if x == 0 {
					continue
				}
				for j := range row {
					row[j] += x * float64(layer.Weight[k*layer.Out+j])
				}
			}
			h[i] = row
		}
		out := make([][]float64, len(need[l+1]))
		for i, d := range need[l+1] {
			dd := 1 / math.Sqrt(float64(1+len(r.g.adj[d])))
			a := make([]float64, layer.Out)
			hd := h[r.pos[d]]
			for j := range a {
				a[j] = dd * hd[j]
			}
			for _, s := range r.g.adj[d] {
				ds := 1 / math.Sqrt(float64(1+len(r.g.adj[s])))
				hs := h[r.pos[s]]
				for j := range a {
					a[j] += ds * hs[j]
				}
			}
			for j := range a {
				a[j] = a[j]*dd + float64(layer.Bias[j])
				if layer.Activation == gcn.ActivationReLU && a[j] < 0 {
					a[j] = 0
				}
			}
			out[i] = a
		}
		in = out
	}
	for _, z := range in {
		m := math.Inf(-1)
		for _, x := range z {
			m = max(m, x)
		}
		sum := 0.0
		for j, x := range z {
			z[j] = math.Exp(x - m)
			sum += z[j]
		}
		for j := range z {
			z[j] /= sum
		}
	}
	return in
}
