package hostilegraphs

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// TestScoreHostile: a million ids (of one node, or past --max-nodes) is
// answered or refused naming the limit; an unknown id is INVALID_ARGUMENT
// naming it; duplicates are answered once per id in node_scores and once
// per listing in predictions.
func TestScoreHostile(t *testing.T) {
	s := start(t, "GCNSERVE_MAX_NODES=100000")
	s.create(t, "g", 50)
	ctx := callCtx(t, 120*time.Second)

	many := make([]string, 1_000_000)
	for i := range many {
		many[i] = "n" + strconv.Itoa(i%50)
	}
	began := time.Now()
	_, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: many})
	t.Logf("score of 1,000,000 ids: %v after %v", status.Code(err), time.Since(began).Round(time.Millisecond))
	wantStatus(t, "ScoreNodes of 1,000,000 ids, --max-nodes 100000", err, codes.ResourceExhausted, "--max-nodes")

	_, err = s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n1", "n2", "ghost"}})
	wantStatus(t, "ScoreNodes of an unknown id", err, codes.InvalidArgument, "node 2", `"ghost"`)

	res, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n1", "n1", "n2", "n1"}, IncludePredictions: true})
	if err != nil || len(res.NodeScores) != 2 || len(res.Predictions) != 4 {
		t.Errorf("ScoreNodes of n1 n1 n2 n1: %d scores, %d predictions, %v; want 2 and 4", len(res.GetNodeScores()), len(res.GetPredictions()), err)
	}
	s.serving(t, "hostile scores")
}

// TestMinRevisionWaits: a score with min_revision above the graph's
// revision waits for it: answered as soon as a delta reaches it (reflecting
// that revision), DEADLINE_EXCEEDED when the call's deadline comes first,
// and FAILED_PRECONDITION naming both revisions after the server's longest
// wait (--graph-revision-wait) when the call has none shorter. A waiting
// score holds no lock: deltas go through meanwhile.
func TestMinRevisionWaits(t *testing.T) {
	s := start(t, "GCNSERVE_GRAPH_REVISION_WAIT=2s")
	s.create(t, "g", 10)
	ctx := callCtx(t, 60*time.Second)

	type answer struct {
		res  *gcnpb.ScoreResponse
		err  error
		took time.Duration
	}
	waiting := make(chan answer, 1)
	began := time.Now()
	go func() {
		res, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n0"}, MinRevision: 3})
		waiting <- answer{res, err, time.Since(began)}
	}()
	time.Sleep(300 * time.Millisecond)
	for i := range 2 {
		if _, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: []*gcnpb.Node{node("x"+strconv.Itoa(i), i)}}); err != nil {
			t.Fatalf("delta %d while a score waits: %v", i, err)
		}
	}
	a := <-waiting
	t.Logf("score with min_revision 3 at revision 1, two deltas 300 ms later: %v at revision %d after %v", a.err, a.res.GetRevision(), a.took.Round(time.Millisecond))
	if a.err != nil || a.res.Revision < 3 {
		t.Errorf("score waiting for revision 3: %v at revision %d, want answered at revision 3", a.err, a.res.GetRevision())
	}

	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	began = time.Now()
	_, err := s.gc.ScoreNodes(short, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n0"}, MinRevision: 100})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(began) < 400*time.Millisecond {
		t.Errorf("score for revision 100 with a 500 ms deadline: %v after %v, want DEADLINE_EXCEEDED after the deadline", err, time.Since(began))
	}

	began = time.Now()
	_, err = s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n0"}, MinRevision: 100})
	took := time.Since(began)
	wantStatus(t, "score for revision 100, server wait 2s", err, codes.FailedPrecondition, "revision 3", "min_revision 100", "--graph-revision-wait")
	if took < 1900*time.Millisecond || took > 5*time.Second {
		t.Errorf("score for revision 100 refused after %v, want after --graph-revision-wait (2s)", took)
	}
	// HTTP waits the same way.
	done := make(chan struct{})
	var code int
	var body string
	go func() {
		defer close(done)
		code, body = s.do(t, "POST", "/v1/graphs/g/score", []byte(`{"node_ids": ["n0"], "min_revision": "4"}`), true)
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: []*gcnpb.Node{node("y", 1)}}); err != nil {
		t.Fatal(err)
	}
	<-done
	if code != 200 {
		t.Errorf("HTTP score waiting for revision 4: %d %.200q, want 200", code, body)
	}
	// Waiting on a graph that is deleted meanwhile ends NOT_FOUND.
	go func() {
		time.Sleep(300 * time.Millisecond)
		s.gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: "g"})
	}()
	_, err = s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n0"}, MinRevision: 100})
	wantStatus(t, "score waiting on a graph deleted meanwhile", err, codes.NotFound, `"g"`)
}
