package serving_test

import (
	"context"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// countingScorer is a stateful Scorer for the NewScorer hook: it answers
// through Recompute and counts the changes it is told about.
type countingScorer struct {
	graphs.Recompute
	changes atomic.Int64
}

func (c *countingScorer) Apply(ch []graphs.Change) error {
	c.changes.Add(int64(len(ch)))
	return nil
}

func (c *countingScorer) Bytes() int64 { return 1000 }

// TestNewScorerHook: a graph whose NewScorer returns a Scorer is in
// incremental mode, its scorer hears every delta's changes and answers the
// scores, which stay exact; its bytes count against the budget.
func TestNewScorerHook(t *testing.T) {
	repo, err := modelrepo.Open(modelrepo.Config{
		ModelFile: filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", "karate_rf.onnx"),
		Options:   []gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	var sc *countingScorer
	gs, err := serving.NewGraphs(serving.New(serving.Config{Repository: repo}), serving.GraphOptions{
		NewScorer: func(g *graphs.Graph, m *gcn.Model, hops int) (graphs.Scorer, string, error) {
			sc = &countingScorer{Recompute: graphs.Recompute{Graph: g, Hops: hops, Predict: func(n int, x []float32, ei []int64) ([]float32, int, error) {
				p, err := m.Predict(context.Background(), gcn.Tensors{NumNodes: n, Features: x, EdgeIndex: ei})
				return p.Probabilities, p.NumClasses, err
			}}}
			return sc, serving.ModeIncremental, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := func(i int) []float32 { x := make([]float32, 34); x[i%34] = 1; return x }
	load := &graphs.Delta{}
	for i, id := range []string{"a", "b", "c", "d"} {
		load.UpsertNodes = append(load.UpsertNodes, graphs.Node{ID: id, Features: f(i)})
	}
	load.AddEdges = []graphs.Edge{{Source: "a", Target: "b"}, {Source: "b", Target: "c"}, {Source: "c", Target: "d"}}
	if _, err := gs.CreateGraph(ctx, "g", "", "", load); err != nil {
		t.Fatal(err)
	}
	if _, err := gs.ScoreNodes(ctx, "g", []string{"a"}, 0); err != nil {
		t.Fatal(err)
	}
	info, _ := gs.GetGraph("g")
	if sc == nil || info.Mode != serving.ModeIncremental {
		t.Fatalf("mode %q after the first score; want the NewScorer's %q", info.Mode, serving.ModeIncremental)
	}
	before := info.Bytes
	if _, err := gs.ApplyDelta(ctx, "g", &graphs.Delta{AddEdges: []graphs.Edge{{Source: "a", Target: "d"}}, RemoveNodes: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	// b's two links, b, the new link: 4 changes.
	if got := sc.changes.Load(); got != 4 {
		t.Fatalf("scorer heard %d changes, want 4", got)
	}
	res, err := gs.ScoreNodes(ctx, "g", []string{"a", "d"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := repo.Acquire("", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	ref, err := lease.Model.PredictGraph(ctx, gcn.Graph{
		Nodes: []gcn.Node{{ID: "a", Features: f(0)}, {ID: "c", Features: f(2)}, {ID: "d", Features: f(3)}},
		Edges: []gcn.Edge{{Source: "c", Target: "d"}, {Source: "a", Target: "d"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(res.Scores[0] - ref.Scores[0])); d > 1e-5 {
		t.Fatalf("score of a %v, whole graph %v", res.Scores[0], ref.Scores[0])
	}
	if after, _ := gs.GetGraph("g"); after.Bytes < 1000 || before < 1000 {
		t.Fatalf("graph bytes %d then %d do not count the scorer's 1000", before, after.Bytes)
	}
}
