package serving_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphs"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// newGraphs serves stored graphs on the bundled karate model with
// receptive_field (recompute mode) and opts.
func newGraphs(t *testing.T, opts serving.GraphOptions) *serving.Graphs {
	t.Helper()
	repo, err := modelrepo.Open(modelrepo.Config{
		ModelFile: filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", "karate_rf.onnx"),
		Options:   []gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	gs, err := serving.NewGraphs(serving.New(serving.Config{Repository: repo}), opts)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func ring(n int) *graphs.Delta {
	d := &graphs.Delta{}
	for i := range n {
		x := make([]float32, 34)
		x[i%34] = 1
		d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: "n" + strconv.Itoa(i), Features: x})
		d.AddEdges = append(d.AddEdges, graphs.Edge{Source: "n" + strconv.Itoa(i), Target: "n" + strconv.Itoa((i+1)%n)})
	}
	return d
}

func kindOf(err error) gcnerr.Kind {
	var e *gcnerr.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// TestScoreWaitsForMinRevision: concurrent scores with min_revision
// beyond the graph's revision are answered once deltas reach it (and
// reflect it); one past every delta ends FailedPrecondition after
// RevisionWait, or with the context's error first; a graph deleted under a
// waiting score ends it NotFound. Under -race.
func TestScoreWaitsForMinRevision(t *testing.T) {
	gs := newGraphs(t, serving.GraphOptions{RevisionWait: 300 * time.Millisecond})
	ctx := context.Background()
	if _, err := gs.CreateGraph(ctx, "g", "", "", ring(10)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for want := uint64(2); want <= 6; want++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := gs.ScoreNodes(ctx, "g", []string{"n0"}, want)
			if err != nil || res.Revision < want {
				t.Errorf("score waiting for revision %d: revision %d, %v", want, res.Revision, err)
			}
		}()
	}
	for i := range 5 {
		time.Sleep(10 * time.Millisecond)
		x := make([]float32, 34)
		if _, err := gs.ApplyDelta(ctx, "g", &graphs.Delta{UpsertNodes: []graphs.Node{{ID: "x" + strconv.Itoa(i), Features: x}}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	began := time.Now()
	_, err := gs.ScoreNodes(ctx, "g", []string{"n0"}, 100)
	if kindOf(err) != gcnerr.FailedPrecondition || !strings.Contains(err.Error(), "--graph-revision-wait") || time.Since(began) < 250*time.Millisecond {
		t.Errorf("score for revision 100: %v after %v, want FailedPrecondition after RevisionWait", err, time.Since(began))
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := gs.ScoreNodes(short, "g", []string{"n0"}, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("score for revision 100 with a 50 ms deadline: %v, want the deadline", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		gs.DeleteGraph("g")
	}()
	if _, err := gs.ScoreNodes(ctx, "g", []string{"n0"}, 100); kindOf(err) != gcnerr.NotFound && !isNotFound(err) {
		t.Errorf("score waiting on a graph deleted meanwhile: %v, want NotFound", err)
	}
}

func isNotFound(err error) bool {
	var e *gcn.Error
	return errors.As(err, &e) && e.Kind == gcn.KindNotFound
}

// TestExportHoldsNoLock: an export whose consumer blocks does not block
// deltas or scores of the graph, and exports the revision it started at.
func TestExportHoldsNoLock(t *testing.T) {
	gs := newGraphs(t, serving.GraphOptions{})
	ctx := context.Background()
	if _, err := gs.CreateGraph(ctx, "g", "", "", ring(3000)); err != nil {
		t.Fatal(err)
	}
	blocked, release := make(chan struct{}), make(chan struct{})
	var exported int
	done := make(chan error, 1)
	go func() {
		info, err := gs.ExportGraph(ctx, "g", 100, func(serving.GraphInfo) error { return nil },
			func(ns []graphs.Node) error {
				if exported == 0 {
					close(blocked)
					<-release // a client that does not read
				}
				exported += len(ns)
				return nil
			},
			func([]graphs.Edge) error { return nil })
		if err == nil && info.Revision != 1 {
			err = errors.New("export at revision " + strconv.Itoa(int(info.Revision)))
		}
		done <- err
	}()
	<-blocked
	x := make([]float32, 34)
	deltaDone := make(chan error, 1)
	go func() {
		_, err := gs.ApplyDelta(ctx, "g", &graphs.Delta{UpsertNodes: []graphs.Node{{ID: "late", Features: x}}})
		if err == nil {
			_, err = gs.ScoreNodes(ctx, "g", []string{"late"}, 2)
		}
		deltaDone <- err
	}()
	select {
	case err := <-deltaDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a delta and a score waited for an export whose client does not read")
	}
	close(release)
	if err := <-done; err != nil || exported != 3000 {
		t.Fatalf("export: %d nodes, %v; want the 3000 of revision 1", exported, err)
	}
}

// TestLoadCountsInBudget: a load under way counts what its chunks hold
// against MaxBytes: a chunk past it is refused naming --max-graph-bytes,
// a create beside a load that holds most of the budget is refused, and
// Release gives the room back.
func TestLoadCountsInBudget(t *testing.T) {
	gs := newGraphs(t, serving.GraphOptions{MaxBytes: 1 << 20})
	ctx := context.Background()
	chunk := func(prefix string, n int) []*gcnpb.Node {
		out := make([]*gcnpb.Node, n)
		for i := range out {
			out[i] = &gcnpb.Node{Id: prefix + strconv.Itoa(i), Features: make([]float32, 34)}
		}
		return out
	}
	if _, err := gs.BeginLoad("../x"); kindOf(err) != gcnerr.InvalidArgument {
		t.Fatalf("BeginLoad of \"../x\": %v, want InvalidArgument", err)
	}
	load, err := gs.BeginLoad("big")
	if err != nil {
		t.Fatal(err)
	}
	if err := load.Add(chunk("a", 3000), nil); err != nil {
		t.Fatal(err)
	}
	if err := load.Add(chunk("b", 3000), nil); kindOf(err) != gcnerr.TooLarge || !strings.Contains(err.Error(), "--max-graph-bytes") {
		t.Fatalf("a load's second chunk past a 1 MiB budget: %v, want TooLarge naming --max-graph-bytes", err)
	}
	if _, err := gs.CreateGraph(ctx, "beside", "", "", ring(2000)); kindOf(err) != gcnerr.TooLarge {
		t.Fatalf("a 2000-node create beside a load holding 600 KB of 1 MiB: %v, want TooLarge", err)
	}
	load.Release()
	load.Release() // idempotent
	if _, err := gs.CreateGraph(ctx, "beside", "", "", ring(2000)); err != nil {
		t.Fatalf("the same create once the load released its bytes: %v", err)
	}
}

// TestEmptyGraphsAreNotFree: empty graphs count GraphOverhead each, so
// creating them runs into MaxBytes.
func TestEmptyGraphsAreNotFree(t *testing.T) {
	gs := newGraphs(t, serving.GraphOptions{MaxBytes: 64 << 10})
	ctx := context.Background()
	n := 0
	var err error
	for ; n < 1000; n++ {
		if _, err = gs.CreateGraph(ctx, "e"+strconv.Itoa(n), "", "", nil); err != nil {
			break
		}
	}
	if kindOf(err) != gcnerr.TooLarge || n > 64 || n < 32 {
		t.Fatalf("%d empty graphs fit a 64 KiB budget, then %v; want about 64/1.0 KiB, then TooLarge", n, err)
	}
	if info, _ := gs.GetGraph("e0"); info.Bytes < serving.GraphOverhead {
		t.Fatalf("an empty graph counts %d bytes, want at least GraphOverhead (%d)", info.Bytes, serving.GraphOverhead)
	}
}

// TestHubMultigraphScoresRecompute: after a delta of 200,000 links among
// ten nodes, a graph in incremental mode answers a score of two of them in
// seconds, not hours (a per-layer state that walked every listing would
// read each neighbour listing's whole list: 40,000 x 40,000 per node; the
// engine keeps each neighbour once with its multiplicity), and equal to
// recompute within 1e-4: ONNX Runtime sums the 40,000 listings of a node
// in float32 (about 1.2e-5 off here), the engine in float64.
func TestHubMultigraphScoresRecompute(t *testing.T) {
	model := filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx")
	var results [2][]float32
	for i, newScorer := range []func(*graphs.Graph, *gcn.Model, int) (graphs.Scorer, string, error){nil, serving.IncrementalScorer} {
		repo, err := modelrepo.Open(modelrepo.Config{ModelFile: model, Options: []gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))}})
		if err != nil {
			t.Fatal(err)
		}
		gs, err := serving.NewGraphs(serving.New(serving.Config{Repository: repo}), serving.GraphOptions{NewScorer: newScorer})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := gs.CreateGraph(ctx, "g", "", "", ring(10)); err != nil {
			t.Fatal(err)
		}
		d := &graphs.Delta{}
		for k := range 200_000 {
			d.AddEdges = append(d.AddEdges, graphs.Edge{Source: "n" + strconv.Itoa(k%10), Target: "n" + strconv.Itoa((k*7+1)%10)})
		}
		if _, err := gs.ApplyDelta(ctx, "g", d); err != nil {
			t.Fatal(err)
		}
		info, _ := gs.GetGraph("g")
		began := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, err := gs.ScoreNodes(ctx, "g", []string{"n0", "n9"}, 0)
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = res.Scores
		}()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("mode %s: a score of two hub nodes still running after 60s", info.Mode)
		}
		t.Logf("mode %s: score of two hubs of 40,000 links each: %v", info.Mode, time.Since(began).Round(time.Millisecond))
		repo.Close()
	}
	for k := range results[0] {
		if d := math.Abs(float64(results[0][k] - results[1][k])); d > 1e-4 {
			t.Fatalf("node %d: recompute %v, incremental mode %v", k, results[0][k], results[1][k])
		}
	}
}
