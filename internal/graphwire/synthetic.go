package graphwire

import (
	"math/rand/v2"
	"strconv"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// SyntheticGraph returns a random request with the given shape, the same for
// the same arguments (within one Go release): node ids "n0" to
// "n<nodes-1>", each node with features values uniform in [0, 1), and
// edges between uniformly random node pairs (self loops and repeats
// included). Benchmarks and the load generator use it to make payloads of
// a known size. It panics if edges > 0 and nodes == 0.
func SyntheticGraph(nodes, edges, features int, seed int64) *gcnpb.GraphData {
	r := rand.New(rand.NewPCG(uint64(seed), 0x67636e))
	return synthetic(r, nodes, edges, features, func() float32 { return r.Float32() })
}

// SyntheticBagOfWordsGraph is SyntheticGraph with binary features shaped
// like Cora's bag of words: each feature is 1 with probability density, else
// 0 (Cora's density is about 0.0127: 18 of 1,433 words per paper).
func SyntheticBagOfWordsGraph(nodes, edges, features int, density float64, seed int64) *gcnpb.GraphData {
	r := rand.New(rand.NewPCG(uint64(seed), 0x626f77))
	return synthetic(r, nodes, edges, features, func() float32 {
		if r.Float64() < density {
			return 1
		}
		return 0
	})
}

func synthetic(r *rand.Rand, nodes, edges, features int, feature func() float32) *gcnpb.GraphData {
	if edges > 0 && nodes == 0 {
		panic("graphwire: SyntheticGraph needs nodes for its edges")
	}
	ids := make([]string, nodes)
	m := &gcnpb.GraphData{
		Nodes: make([]*gcnpb.Node, nodes),
		Edges: make([]*gcnpb.Edge, edges),
	}
	// One backing array for all feature vectors keeps building a large
	// payload quick.
	all := make([]float32, nodes*features)
	for i := range m.Nodes {
		ids[i] = "n" + strconv.Itoa(i)
		f := all[i*features : (i+1)*features : (i+1)*features]
		for k := range f {
			f[k] = feature()
		}
		m.Nodes[i] = &gcnpb.Node{Id: ids[i], Features: f}
	}
	for j := range m.Edges {
		m.Edges[j] = &gcnpb.Edge{SourceId: ids[r.IntN(nodes)], TargetId: ids[r.IntN(nodes)]}
	}
	return m
}
