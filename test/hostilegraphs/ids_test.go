package hostilegraphs

import (
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// TestGraphIDs: path-like, long, unicode and empty graph ids are refused
// (INVALID_ARGUMENT, 400 or 404) with a short message, over gRPC and HTTP,
// and nothing but the store's one file appears in --graph-store.
func TestGraphIDs(t *testing.T) {
	s := start(t)
	ctx := callCtx(t, 30*time.Second)
	s.create(t, "x", 5) // must survive every request below
	ids := []string{"../x", "a/b", "..", ".", ".hidden", "/abs", `a\b`, "a b", "a\x00b", "グラフ", "",
		strings.Repeat("y", 129), strings.Repeat("z", 1<<20)}
	for _, id := range ids {
		shown := id
		if len(shown) > 20 {
			shown = shown[:20] + "...(" + strconv.Itoa(len(id)) + " bytes)"
		}
		_, err := s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: id, Graph: ring("n", 3)})
		st := status.Convert(err)
		if len(id) > 1<<16 {
			// Over the message limit of GetGraph & co, within CreateGraph's.
			if st.Code() != codes.InvalidArgument || len(st.Message()) > 400 {
				t.Errorf("CreateGraph %q: %v with a %d-byte message, want INVALID_ARGUMENT of at most 400 bytes", shown, st.Code(), len(st.Message()))
			}
			_, err := s.gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: id})
			wantStatus(t, "GetGraph with a 1 MiB id", err, codes.ResourceExhausted, "limit of 4096 bytes")
			continue
		}
		if st.Code() != codes.InvalidArgument || len(st.Message()) > 400 || !strings.Contains(st.Message(), "graph id") {
			t.Errorf("CreateGraph %q: %v %.300q, want INVALID_ARGUMENT naming the graph id, at most 400 bytes", shown, st.Code(), st.Message())
		}
		for name, call := range map[string]func() error{
			"GetGraph":    func() error { _, err := s.gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: id}); return err },
			"DeleteGraph": func() error { _, err := s.gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: id}); return err },
			"ApplyDelta":  func() error { _, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: id}); return err },
			"ScoreNodes":  func() error { _, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: id}); return err },
		} {
			if err := call(); status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s %q: %v, want INVALID_ARGUMENT", name, shown, err)
			}
		}
		// HTTP: the id in the path, escaped; in the body for a create.
		for _, m := range []string{"GET", "DELETE"} {
			code, body := s.do(t, m, "/v1/graphs/"+url.PathEscape(id), nil, true)
			// ServeMux redirects "." and ".." to the cleaned path (307),
			// which names no graph.
			if code != http.StatusBadRequest && code != http.StatusNotFound && code != http.StatusMethodNotAllowed &&
				code != http.StatusTemporaryRedirect && !(code == http.StatusOK && strings.HasPrefix(body, `{"graphs"`)) {
				t.Errorf("%s /v1/graphs/%s: %d %.200q, want 400 or 404", m, url.PathEscape(shown), code, body)
			}
		}
		code, body := s.do(t, "POST", "/v1/graphs", jsonBody(t, map[string]any{"graph_id": id}), true)
		if code != http.StatusBadRequest || !strings.Contains(body, "graph id") {
			t.Errorf("POST /v1/graphs with id %q: %d %.200q, want 400 naming the graph id", shown, code, body)
		}
	}
	// Unescaped path tricks never reach another route or a file.
	for _, p := range []string{"/v1/graphs/../graphs", "/v1/graphs/a/b", "/v1/graphs/%2e%2e%2fx", "/v1/graphs/%2Fetc%2Fpasswd"} {
		code, body := s.do(t, "GET", p, nil, true)
		if code >= 500 || code == http.StatusOK && !strings.HasPrefix(body, "{") {
			t.Errorf("GET %s: %d %.200q, want a JSON refusal or a listing", p, code, body)
		}
	}
	if info, err := s.gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "x"}); err != nil || info.Revision != 1 {
		t.Errorf("graph \"x\" after the hostile ids: %v %v, want it untouched", info, err)
	}
	entries, err := os.ReadDir(s.store)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "graphs.db" {
			t.Errorf("--graph-store holds %q, want only graphs.db", e.Name())
		}
	}
	s.serving(t, "hostile graph ids")
}

// TestManyGraphsExhaustBudget: creating graphs, empty ones included, runs
// into --max-graph-bytes (RESOURCE_EXHAUSTED naming it) long before
// 20,000 of them on a 2 MiB budget: an empty graph is not free. The server
// keeps serving, and deleting a graph makes room again.
func TestManyGraphsExhaustBudget(t *testing.T) {
	s := start(t, "GCNSERVE_MAX_GRAPH_BYTES="+strconv.Itoa(2<<20))
	ctx := callCtx(t, 300*time.Second)
	var (
		mu      sync.Mutex
		created int
		refusal error
		wg      sync.WaitGroup
	)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				_, err := s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "e" + strconv.Itoa(i)})
				mu.Lock()
				if err == nil {
					created++
				} else if refusal == nil {
					refusal = err
				}
				mu.Unlock()
			}
		}()
	}
	for i := range 20_000 {
		mu.Lock()
		stop := refusal != nil
		mu.Unlock()
		if stop {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("empty graphs created before the first refusal on a 2 MiB budget: %d; refusal: %v", created, refusal)
	if refusal == nil {
		t.Fatalf("20,000 empty graphs created on a 2 MiB --max-graph-bytes, want RESOURCE_EXHAUSTED before")
	}
	wantStatus(t, "CreateGraph past the budget", refusal, codes.ResourceExhausted, "--max-graph-bytes")
	// A graph with content does not fit either, and says so.
	_, err := s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "full", Graph: ring("n", 100)})
	wantStatus(t, "CreateGraph of 100 nodes on a full budget", err, codes.ResourceExhausted, "--max-graph-bytes", `"full"`)
	// Reads still work; deleting makes room.
	list, err := s.gc.ListGraphs(ctx, &gcnpb.ListGraphsRequest{})
	if err != nil || len(list.Graphs) != created {
		t.Errorf("ListGraphs on a full budget: %d graphs, %v; want %d", len(list.GetGraphs()), err, created)
	}
	for i := range 50 {
		s.gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: "e" + strconv.Itoa(i)})
	}
	if _, err := s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "after", Graph: ring("n", 5)}); err != nil {
		t.Errorf("CreateGraph after deleting 50 graphs: %v, want room again", err)
	}
	if code, _ := s.do(t, "GET", "/healthz", nil, false); code != http.StatusOK {
		t.Errorf("/healthz on a full graph budget: %d", code)
	}
}
