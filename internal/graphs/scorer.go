package graphs

import "fmt"

// Scorer answers class probabilities for nodes of one stored graph with one
// model version. Two kinds exist: Recompute (this package: runs the model
// on the (k+1)-hop subgraph of the asked nodes at each call) and the
// incremental engine's per-layer state (internal/incremental.State, same
// methods). The graph's owner calls them under the graph's lock: Apply
// under the write lock after every delta, Probabilities and Bytes under
// the read lock.
type Scorer interface {
	// Probabilities writes the C class probabilities of each live slot in
	// nodes to dst[i*C:(i+1)*C].
	Probabilities(nodes []int32, dst []float32) error
	// Apply updates the scorer's state after a delta's changes.
	Apply(changes []Change) error
	// Bytes is the memory the scorer's own state holds.
	Bytes() int64
}

// PredictFunc runs a model on a graph in its input form ([N, F] features,
// [2, E] edge index) and returns the [N, C] probabilities.
type PredictFunc func(numNodes int, features []float32, edgeIndex []int64) (probabilities []float32, numClasses int, err error)

// Recompute is the Scorer for any model that declares its receptive field:
// each call extracts the asked nodes' subgraph (Extract) and runs the model
// on it. It keeps no state.
type Recompute struct {
	Graph *Graph
	// Hops is the model's receptive field (gcn.MetadataReceptiveField).
	Hops    int
	Predict PredictFunc
}

// Probabilities implements Scorer.
func (r *Recompute) Probabilities(nodes []int32, dst []float32) error {
	if len(nodes) == 0 {
		return nil
	}
	sub := r.Graph.Extract(nodes, r.Hops)
	probs, c, err := r.Predict(sub.NumNodes(), sub.Features, sub.EdgeIndex)
	if err != nil {
		return err
	}
	if len(dst) != len(nodes)*c || len(probs) != sub.NumNodes()*c {
		return fmt.Errorf("graphs: %d probabilities for %d nodes of %d classes, dst holds %d", len(probs), sub.NumNodes(), c, len(dst))
	}
	for i, row := range sub.Rows {
		copy(dst[i*c:(i+1)*c], probs[int(row)*c:(int(row)+1)*c])
	}
	return nil
}

// Apply implements Scorer: Recompute has nothing to update.
func (r *Recompute) Apply([]Change) error { return nil }

// Bytes implements Scorer: Recompute holds nothing.
func (r *Recompute) Bytes() int64 { return 0 }
