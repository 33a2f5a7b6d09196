package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// rfModel is the bundled karate model with receptive_field = 2 (stored
// graphs refuse a model without it).
func rfModel(t *testing.T) string {
	return filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", "karate_rf.onnx")
}

func karateGraph(t *testing.T) *gcnpb.GraphData {
	t.Helper()
	g := &gcnpb.GraphData{}
	for i := range 34 {
		g.Nodes = append(g.Nodes, node("m"+itoa(i), i))
	}
	for i := range 34 {
		g.Edges = append(g.Edges, edge("m"+itoa(i), "m"+itoa((i*7+3)%34)), edge("m"+itoa(i), "m"+itoa((i+1)%34)))
	}
	g.Edges = append(g.Edges, edge("m5", "m5"), edge("m1", "m2"))
	return g
}

func itoa(i int) string { return strconv.Itoa(i) }

func wantCode(t *testing.T, err error, code codes.Code, sub string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), sub) {
		t.Fatalf("got %v, want %v containing %q", err, code, sub)
	}
}

// checkScores compares ScoreNodes with ProcessGraph on the exported graph.
func checkScores(t *testing.T, ctx context.Context, gc gcnpb.GraphServiceClient, pc gcnpb.GCNServiceClient, id string, ids []string) uint64 {
	t.Helper()
	stream, err := gc.ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: id})
	if err != nil {
		t.Fatal(err)
	}
	whole := &gcnpb.GraphData{}
	for {
		c, err := stream.Recv()
		if err != nil {
			break
		}
		whole.Nodes = append(whole.Nodes, c.Nodes...)
		whole.Edges = append(whole.Edges, c.Edges...)
	}
	ref, err := pc.ProcessGraph(ctx, whole)
	if err != nil {
		t.Fatalf("ProcessGraph on the exported graph: %v", err)
	}
	res, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: id, NodeIds: ids, IncludePredictions: true})
	if err != nil {
		t.Fatalf("ScoreNodes: %v", err)
	}
	if len(res.NodeScores) != len(dedupe(ids)) || len(res.Predictions) != len(ids) {
		t.Fatalf("ScoreNodes answered %d scores and %d predictions for %d ids", len(res.NodeScores), len(res.Predictions), len(ids))
	}
	for _, id := range ids {
		if d := math.Abs(float64(res.NodeScores[id] - ref.NodeScores[id])); d > 1e-5 {
			t.Fatalf("node %s: stored-graph score %v, ProcessGraph %v", id, res.NodeScores[id], ref.NodeScores[id])
		}
	}
	return res.Revision
}

func dedupe(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// TestGraphService runs every GraphService call over gRPC (bufconn) on the
// real model, with a store, then restarts on the same store.
func TestGraphService(t *testing.T) {
	dir := t.TempDir()
	edit := func(c *Config) { c.ModelPath = rfModel(t); c.GraphStore = dir }
	cfg := testConfig(t)
	edit(&cfg)
	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, stop := serveStoppable(t, s1)
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	info, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "club", Graph: karateGraph(t)})
	if err != nil {
		t.Fatal(err)
	}
	if info.Nodes != 34 || info.Edges != 70 || info.Revision != 1 || info.ModelName != "gcn-karate" || info.Mode != "recompute" || info.Bytes <= 0 {
		t.Fatalf("CreateGraph: %v", info)
	}
	_, err = gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "club"})
	wantCode(t, err, codes.AlreadyExists, `graph "club" exists`)
	_, err = gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "../etc"})
	wantCode(t, err, codes.InvalidArgument, `graph id "../etc": byte 0 is not allowed`)
	checkScores(t, ctx, gc, pc, "club", []string{"m0", "m5", "m33", "m0"})

	// Deltas: applied, duplicate, conflicting, invalid.
	d := &gcnpb.DeltaRequest{GraphId: "club", IdempotencyKey: "k1",
		UpsertNodes: []*gcnpb.Node{node("new", 3), node("m4", 9)},
		AddEdges:    []*gcnpb.Edge{edge("new", "m0"), edge("new", "m33")},
		RemoveEdges: []*gcnpb.Edge{edge("m2", "m1")},
		RemoveNodes: []string{"m7"}}
	r, err := gc.ApplyDelta(ctx, d)
	if err != nil || r.Revision != 2 || r.Duplicate {
		t.Fatalf("ApplyDelta: %v, %v; want revision 2", r, err)
	}
	r, err = gc.ApplyDelta(ctx, d)
	if err != nil || r.Revision != 2 || !r.Duplicate {
		t.Fatalf("ApplyDelta retried: %v, %v; want revision 2, duplicate", r, err)
	}
	stale := uint64(1)
	_, err = gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "club", ExpectedRevision: &stale, AddEdges: []*gcnpb.Edge{edge("m1", "m2")}})
	wantCode(t, err, codes.Aborted, "expected revision 1, the graph is at revision 2")
	_, err = gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "club", AddEdges: []*gcnpb.Edge{edge("m1", "m7")}})
	wantCode(t, err, codes.InvalidArgument, `edge 0: target "m7" is not a node id`)
	_, err = gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "club", UpsertNodes: []*gcnpb.Node{{Id: "x", Features: []float32{1}}}})
	wantCode(t, err, codes.InvalidArgument, `node 0 ("x"): 1 features, model wants 34`)
	_, err = gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "nope"})
	wantCode(t, err, codes.NotFound, `no stored graph "nope"`)
	if rev := checkScores(t, ctx, gc, pc, "club", []string{"new", "m0", "m33", "m4", "m6"}); rev != 2 {
		t.Fatalf("score reflects revision %d, want 2", rev)
	}
	if empty, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "club"}); err != nil || len(empty.NodeScores) != 0 || empty.Revision != 2 {
		t.Fatalf("ScoreNodes of no node: %v, %v", empty, err)
	}
	_, err = gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "club", NodeIds: []string{"m7"}})
	wantCode(t, err, codes.InvalidArgument, `node 0: "m7" is not a node of graph "club"`)
	_, err = gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "club", NodeIds: []string{"m1"}, MinRevision: 9})
	wantCode(t, err, codes.FailedPrecondition, "min_revision 9 not reached")

	// LoadGraph in chunks.
	ls, err := gc.LoadGraph(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g := karateGraph(t)
	ls.Send(&gcnpb.LoadGraphChunk{GraphId: "club2", Nodes: g.Nodes[:20]})
	ls.Send(&gcnpb.LoadGraphChunk{Nodes: g.Nodes[20:], Edges: g.Edges[:10]})
	ls.Send(&gcnpb.LoadGraphChunk{Edges: g.Edges[10:]})
	if info, err := ls.CloseAndRecv(); err != nil || info.Nodes != 34 || info.Edges != 70 {
		t.Fatalf("LoadGraph: %v, %v", info, err)
	}
	list, err := gc.ListGraphs(ctx, &gcnpb.ListGraphsRequest{})
	if err != nil || len(list.Graphs) != 2 || list.Graphs[0].GraphId != "club" || list.Graphs[1].GraphId != "club2" {
		t.Fatalf("ListGraphs: %v, %v", list, err)
	}
	if _, err := gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: "club2"}); err != nil {
		t.Fatal(err)
	}
	_, err = gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "club2"})
	wantCode(t, err, codes.NotFound, `no stored graph "club2"`)
	before, err := gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "club"})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	// A new server on the same store recovers the graph at its revision,
	// with the same scores.
	conn2 := startRealConn(t, edit)
	gc, pc = gcnpb.NewGraphServiceClient(conn2), gcnpb.NewGCNServiceClient(conn2)
	after, err := gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "club"})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if after.Revision != before.Revision || after.Nodes != before.Nodes || after.Edges != before.Edges {
		t.Fatalf("after restart %v, before %v", after, before)
	}
	checkScores(t, ctx, gc, pc, "club", []string{"new", "m0", "m4"})
	if _, err := gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "club2"}); status.Code(err) != codes.NotFound {
		t.Fatalf("deleted graph after restart: %v", err)
	}
	// The idempotency key survived the restart.
	if r, err := gc.ApplyDelta(ctx, d); err != nil || !r.Duplicate || r.Revision != 2 {
		t.Fatalf("retry after restart: %v, %v; want a duplicate of revision 2", r, err)
	}
}

// serveStoppable is serve with an explicit stop (cleanup stops it if the
// test did not).
func serveStoppable(t *testing.T, s *Server) (*grpc.ClientConn, func()) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			conn.Close()
			s.Shutdown()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return conn, stop
}

// TestGraphModelWithoutReceptiveField: a model without receptive_field
// metadata (testdata/karate_no_rf.onnx: model/karate.onnx without that key)
// is refused for stored graphs.
func TestGraphModelWithoutReceptiveField(t *testing.T) {
	conn := startRealConn(t, func(c *Config) {
		c.ModelPath = filepath.Join(testenv.RepoRoot(t), "internal", "graphs", "testdata", "karate_no_rf.onnx")
	})
	_, err := gcnpb.NewGraphServiceClient(conn).CreateGraph(context.Background(), &gcnpb.CreateGraphRequest{GraphId: "g"})
	wantCode(t, err, codes.FailedPrecondition, `has no "receptive_field" metadata`)
}

// TestGraphBudget: a graph past --max-graph-bytes is RESOURCE_EXHAUSTED
// naming the flag, over gRPC and as 413 over HTTP.
func TestGraphBudget(t *testing.T) {
	cfg := testConfig(t)
	cfg.ModelPath = rfModel(t)
	cfg.MaxGraphBytes = 4096
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := serve(t, s)
	gc := gcnpb.NewGraphServiceClient(conn)
	_, err = gc.CreateGraph(context.Background(), &gcnpb.CreateGraphRequest{GraphId: "big", Graph: karateGraph(t)})
	wantCode(t, err, codes.ResourceExhausted, "(--max-graph-bytes)")

	rec := httptest.NewRecorder()
	body := `{"graph_id": "big", "graph": {"nodes": [` + strings.Repeat(`{"id": "a", "features": [`+strings.Repeat("0,", 33)+`1]},`, 1) + `{"id": "b", "features": [` + strings.Repeat("0,", 33) + `1]}]}}`
	s.httpHandler.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/graphs", strings.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP create of a 2-node graph: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	nodes := make([]string, 40)
	for i := range nodes {
		nodes[i] = `{"id": "n` + itoa(i) + `", "features": [` + strings.Repeat("0,", 33) + `1]}`
	}
	s.httpHandler.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/graphs/big/deltas", strings.NewReader(`{"upsert_nodes": [`+strings.Join(nodes, ",")+`]}`)))
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "--max-graph-bytes") {
		t.Fatalf("HTTP delta past the budget: %d %s", rec.Code, rec.Body)
	}
}

// publish copies a model file into repo/name/version/model.onnx, dated in
// the past so the repository loads it at once.
func publish(t *testing.T, repo, name, version, src string) {
	t.Helper()
	dir := filepath.Join(repo, name, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

// TestGraphModelLifecycle: a graph follows its model's new version, refuses
// a version whose feature dimension does not fit (log line, metric), and
// answers FAILED_PRECONDITION naming the model once it is removed.
func TestGraphModelLifecycle(t *testing.T) {
	root := testenv.RepoRoot(t)
	td := filepath.Join(root, "internal", "graphs", "testdata")
	repo := t.TempDir()
	publish(t, repo, "karate", "1", filepath.Join(td, "karate_rf.onnx"))
	publish(t, repo, "other", "1", filepath.Join(td, "karate_rf.onnx"))
	cfg := testConfig(t)
	cfg.ModelRepository, cfg.DefaultModel, cfg.RepositoryPollInterval = repo, "other", 0
	var logs strings.Builder
	var logMu sync.Mutex
	cfg.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := serveStoppable(t, s)
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "g", ModelName: "karate", Graph: karateGraph(t)}); err != nil {
		t.Fatal(err)
	}
	ask := &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"m0", "m9"}}
	v1, err := gc.ScoreNodes(ctx, ask)
	if err != nil || v1.ModelVersion != "1" {
		t.Fatalf("score on version 1: %v, %v", v1, err)
	}

	publish(t, repo, "karate", "2", filepath.Join(td, "karate_seed2_rf.onnx"))
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	v2, err := gc.ScoreNodes(ctx, ask)
	if err != nil || v2.ModelVersion != "2" || v2.NodeScores["m0"] == v1.NodeScores["m0"] {
		t.Fatalf("score after version 2 was published: %v, %v (version 1 gave %v)", v2, err, v1)
	}
	whole := karateGraph(t)
	whole.ModelName, whole.ModelVersion = "karate", "2"
	ref, err := pc.ProcessGraph(ctx, whole)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(v2.NodeScores["m9"] - ref.NodeScores["m9"])); d > 1e-5 {
		t.Fatalf("version 2 score %v, ProcessGraph on version 2 gives %v", v2.NodeScores["m9"], ref.NodeScores["m9"])
	}

	publish(t, repo, "karate", "3", filepath.Join(td, "cora_rf.onnx"))
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = gc.ScoreNodes(ctx, ask)
	wantCode(t, err, codes.FailedPrecondition, `graph "g" has 34 features per node, model "karate" version 3 wants 1433`)
	logMu.Lock()
	logged := strings.Contains(logs.String(), "feature dimension does not fit")
	logMu.Unlock()
	if !logged {
		t.Error("no log line for the refused version")
	}
	rec := httptest.NewRecorder()
	s.httpHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `gcnserve_graph_model_refusals_total{reason="feature_dim"} 1`) {
		t.Error("gcnserve_graph_model_refusals_total{reason=\"feature_dim\"} is not 1")
	}

	if err := os.RemoveAll(filepath.Join(repo, "karate")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = gc.ScoreNodes(ctx, ask)
		if status.Code(err) == codes.FailedPrecondition && strings.Contains(status.Convert(err).Message(), `its model "karate" is not served`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("score after the model was removed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestGraphConcurrentDeltasAndScores: writers and readers at once (run it
// under -race). Every score asked right after a delta's acknowledgement
// sees it (read-your-writes: the node it added exists, the revision is at
// least the acknowledged one), and the final scores are exact.
func TestGraphConcurrentDeltasAndScores(t *testing.T) {
	conn := startRealConn(t, func(c *Config) { c.ModelPath = rfModel(t) })
	gc, pc := gcnpb.NewGraphServiceClient(conn), gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "c", Graph: karateGraph(t)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 30 {
				id := "w" + itoa(w) + "-" + itoa(k)
				d := &gcnpb.DeltaRequest{GraphId: "c",
					UpsertNodes: []*gcnpb.Node{node(id, k)},
					AddEdges:    []*gcnpb.Edge{edge(id, "m"+itoa(k%34)), edge(id, "m"+itoa((k*5)%34))}}
				if err := applyThenScore(ctx, gc, d, id, "m0"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 60 {
				if _, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "c", NodeIds: []string{"m1", "m2", "m3"}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if rev := checkScores(t, ctx, gc, pc, "c", []string{"m0", "m5", "w0-29", "w2-3"}); rev != 91 {
		t.Fatalf("final revision %d, want 91", rev)
	}
}

// TestGraphHTTP runs the stored-graph routes over HTTP/JSON: the same
// calls, messages and error table as gRPC.
func TestGraphHTTP(t *testing.T) {
	cfg := testConfig(t)
	cfg.ModelPath = rfModel(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	do := func(method, path, body string, wantStatus int, wantSub string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		s.httpHandler.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		if rec.Code != wantStatus || !strings.Contains(rec.Body.String(), wantSub) {
			t.Fatalf("%s %s: %d %s; want %d containing %q", method, path, rec.Code, rec.Body, wantStatus, wantSub)
		}
		return rec.Body.String()
	}
	g, err := protojson.Marshal(&gcnpb.CreateGraphRequest{GraphId: "h", Graph: karateGraph(t)})
	if err != nil {
		t.Fatal(err)
	}
	do("POST", "/v1/graphs", string(g), 200, `"revision":"1"`)
	do("POST", "/v1/graphs", string(g), 409, `graph \"h\" exists`)
	do("POST", "/v1/graphs/h/deltas", `{"add_edges": [{"source_id": "m1", "target_id": "m30"}], "expected_revision": 1}`, 200, `"revision":"2"`)
	do("POST", "/v1/graphs/h/deltas", `{"add_edges": [{"source_id": "m1", "target_id": "m30"}], "expected_revision": 1}`, 409, "expected revision 1, the graph is at revision 2")
	do("POST", "/v1/graphs/h/deltas", `{"remove_edges": [{"source_id": "m1", "target_id": "m29"}]}`, 400, `remove_edges 0: no edge \"m1\" - \"m29\"`)
	do("POST", "/v1/graphs/h/deltas", `{"bogus": 1}`, 400, "not a JSON DeltaRequest")
	out := do("POST", "/v1/graphs/h/score", `{"node_ids": ["m1", "m30"], "include_predictions": true}`, 200, `"revision":"2"`)
	res := &gcnpb.ScoreResponse{}
	if err := protojson.Unmarshal([]byte(out), res); err != nil || len(res.NodeScores) != 2 || len(res.Predictions) != 2 {
		t.Fatalf("score answer %s (%v)", out, err)
	}
	do("GET", "/v1/graphs/h", "", 200, `"edges":"71"`)
	do("GET", "/v1/graphs", "", 200, `"graphId":"h"`)
	exp := do("GET", "/v1/graphs/h/export", "", 200, `"info"`)
	if lines := strings.Count(exp, "\n"); lines < 1 {
		t.Fatalf("export: %d lines", lines)
	}
	do("DELETE", "/v1/graphs/h", "", 200, "{")
	do("GET", "/v1/graphs/h", "", 404, `no stored graph \"h\"`)
	do("POST", "/v1/graphs/h/score", `{"node_ids": ["m1"]}`, 404, `no stored graph \"h\"`)
}

// TestGraphServiceNeedsToken: with --auth-token-file, GraphService calls
// (unary and streaming) and the HTTP routes need a bearer token, as every
// other call does.
func TestGraphServiceNeedsToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("s3cret-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.ModelPath, cfg.AuthTokenFile = rfModel(t), tokens
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gc := gcnpb.NewGraphServiceClient(serve(t, s))
	ctx := context.Background()
	_, err = gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "g"})
	wantCode(t, err, codes.Unauthenticated, "bearer token")
	stream, err := gc.ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: "g"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.Unauthenticated, "bearer token")
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret-token-value")
	if info, err := gc.CreateGraph(authed, &gcnpb.CreateGraphRequest{GraphId: "g"}); err != nil || info.Revision != 1 || info.Nodes != 0 {
		t.Fatalf("empty graph with the token: %v, %v; want revision 1, no nodes", info, err)
	}
	rec := httptest.NewRecorder()
	s.httpHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/graphs", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/graphs without a token: %d", rec.Code)
	}
}

// applyThenScore applies d, then scores ids on the same graph and checks
// read-your-writes: the score reflects at least the delta's revision.
func applyThenScore(ctx context.Context, gc gcnpb.GraphServiceClient, d *gcnpb.DeltaRequest, ids ...string) error {
	res, err := gc.ApplyDelta(ctx, d)
	if err != nil {
		return err
	}
	sc, err := gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: d.GetGraphId(), NodeIds: ids})
	if err != nil {
		return fmt.Errorf("score right after delta %d was acknowledged: %w", res.Revision, err)
	}
	if sc.Revision < res.Revision {
		return fmt.Errorf("score reflects revision %d after delta %d was acknowledged", sc.Revision, res.Revision)
	}
	return nil
}
