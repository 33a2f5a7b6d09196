package hostilegraphs

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/servertest"
)

// loadBig loads graph id of n nodes (a ring) in chunks of 10,000.
func (s *server) loadBig(t *testing.T, id string, n int) {
	t.Helper()
	st, err := s.gc.LoadGraph(callCtx(t, 120*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for lo := 0; lo < n; lo += 10_000 {
		c := &gcnpb.LoadGraphChunk{}
		if lo == 0 {
			c.GraphId = id
		}
		for i := lo; i < min(lo+10_000, n); i++ {
			c.Nodes = append(c.Nodes, node("n"+strconv.Itoa(i), i))
			c.Edges = append(c.Edges, edge("n"+strconv.Itoa(i), "n"+strconv.Itoa((i+1)%n)))
		}
		if err := st.Send(c); err != nil {
			t.Fatalf("LoadGraph chunk at %d: %v", lo, err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatalf("LoadGraph %q: %v", id, err)
	}
}

// TestExportNeverRead: an ExportGraph (gRPC) or /export (HTTP) client that
// takes the first chunk and then never reads does not hold the graph:
// deltas and scores of that graph are answered at once meanwhile; the
// server's memory stays bounded; and the stalled export is cut off after
// --stream-send-timeout.
func TestExportNeverRead(t *testing.T) {
	const sendTimeout = 3 * time.Second
	s := start(t, "GCNSERVE_STREAM_SEND_TIMEOUT="+sendTimeout.String())
	s.loadBig(t, "big", 100_000)
	ctx := callCtx(t, 120*time.Second)

	// The size of a whole HTTP export, read by a client that reads.
	code, whole := s.do(t, "GET", "/v1/graphs/big/export", nil, true)
	if code != 200 {
		t.Fatalf("export: %d %.200q", code, whole)
	}
	before := s.Memory(t, "VmHWM")

	// gRPC: small windows, so the server's sends block once 64 KiB wait.
	slow := servertest.Dial(t, s.Addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	stalled, err := gcnpb.NewGraphServiceClient(slow).ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stalled.Recv(); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	// HTTP: read the status line, then nothing.
	hc, err := net.Dial("tcp", s.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	// A 64 KiB receive window: the server's writes block after a few MB
	// (its send buffer), far from the 14 MB export.
	hc.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(hc, "GET /v1/graphs/big/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", token)
	hr := bufio.NewReaderSize(hc, 4096)
	line, err := hr.ReadString('\n')
	if err != nil || line[:12] != "HTTP/1.1 200" {
		t.Fatalf("HTTP export: %q %v", line, err)
	}
	time.Sleep(500 * time.Millisecond) // both exports are blocked on their clients

	for i := range 3 {
		began := time.Now()
		_, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "big", UpsertNodes: []*gcnpb.Node{node("new"+strconv.Itoa(i), i)},
			AddEdges: []*gcnpb.Edge{edge("new"+strconv.Itoa(i), "n1")}})
		took := time.Since(began)
		if err != nil || took > 2*time.Second {
			t.Errorf("delta %d while two exports of the graph are not read: %v after %v, want OK within 2s", i, err, took.Round(time.Millisecond))
		}
		began = time.Now()
		_, err = s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "big", NodeIds: []string{"n1"}})
		if took := time.Since(began); err != nil || took > 2*time.Second {
			t.Errorf("score %d while two exports of the graph are not read: %v after %v, want OK within 2s", i, err, took.Round(time.Millisecond))
		}
	}

	// The gRPC export is cut: draining what the window held ends in an
	// error, not in the end of the graph.
	var ended error
	var chunks int
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Until(opened.Add(sendTimeout + 2*time.Second)))
		for {
			if _, ended = stalled.Recv(); ended != nil {
				return
			}
			chunks++
		}
	}()
	select {
	case <-done:
	case <-time.After(sendTimeout + 20*time.Second):
		t.Fatalf("gRPC export still streaming %v after it stalled", time.Since(opened))
	}
	t.Logf("gRPC export not read for %v: %d chunks drained, then %v", sendTimeout+2*time.Second, chunks, ended)
	if ended == io.EOF || status.Code(ended) == codes.OK {
		t.Errorf("gRPC export not read for %v: it ended normally, want it cut off after --stream-send-timeout", sendTimeout+2*time.Second)
	}

	// The HTTP export is cut: the connection ends before the whole body.
	time.Sleep(time.Until(opened.Add(sendTimeout + 2*time.Second)))
	hc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, hr)
	t.Logf("HTTP export not read for %v: then %d bytes, %v (whole export: %d bytes)", sendTimeout+2*time.Second, n, err, len(whole))
	switch ne, ok := err.(net.Error); {
	case ok && ne.Timeout():
		t.Errorf("HTTP export not read: the connection was still open 20s after the client resumed reading (%d bytes), want it closed after --stream-send-timeout", n)
	case n >= int64(len(whole))-1024:
		t.Errorf("HTTP export not read for %v: the server then sent all %d bytes, want it cut off after --stream-send-timeout", sendTimeout+2*time.Second, n)
	}
	growth := s.Memory(t, "VmHWM") - before
	t.Logf("two stalled exports of a 100k-node graph: peak RSS grew by %s", mib(growth))
	if growth > 128<<20 {
		t.Errorf("two stalled exports: peak RSS grew by %s, want under 128 MiB", mib(growth))
	}
	s.serving(t, "exports never read")
}

// TestDeleteRaces: DeleteGraph (and re-creation) of a graph while other
// clients load it, apply deltas to it and score it: every call gets OK or
// a clear refusal (NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, ABORTED),
// never INTERNAL or a dead server.
func TestDeleteRaces(t *testing.T) {
	s := start(t)
	ctx := callCtx(t, 120*time.Second)
	const id = "race"
	s.create(t, id, 20)
	stop := time.Now().Add(4 * time.Second)
	var mu sync.Mutex
	counts := map[codes.Code]int{}
	record := func(what string, err error) {
		c := status.Code(err)
		mu.Lock()
		counts[c]++
		mu.Unlock()
		switch c {
		case codes.OK, codes.NotFound, codes.AlreadyExists, codes.InvalidArgument, codes.Aborted:
		default:
			t.Errorf("%s racing a delete: %v", what, err)
		}
	}
	var wg sync.WaitGroup
	run := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				f(i)
			}
		}()
	}
	run(func(i int) { // delete and re-create
		_, err := s.gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: id})
		record("DeleteGraph", err)
		_, err = s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: id, Graph: ring("n", 20)})
		record("CreateGraph", err)
	})
	run(func(i int) { // load under the same id
		st, err := s.gc.LoadGraph(ctx)
		if err != nil {
			record("LoadGraph", err)
			return
		}
		c := &gcnpb.LoadGraphChunk{GraphId: id, Nodes: ring("n", 20).Nodes}
		st.Send(c)
		st.Send(&gcnpb.LoadGraphChunk{Edges: ring("n", 20).Edges})
		_, err = st.CloseAndRecv()
		record("LoadGraph", err)
	})
	for range 2 {
		run(func(i int) {
			_, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: id, UpsertNodes: []*gcnpb.Node{node("d"+strconv.Itoa(i), i)},
				AddEdges: []*gcnpb.Edge{edge("d"+strconv.Itoa(i), "n3")}})
			record("ApplyDelta", err)
		})
	}
	for range 2 {
		run(func(i int) {
			_, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: id, NodeIds: []string{"n1", "n3"}})
			record("ScoreNodes", err)
		})
	}
	run(func(i int) {
		st, err := s.gc.ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: id})
		for err == nil {
			_, err = st.Recv()
		}
		if err == io.EOF {
			err = nil
		}
		record("ExportGraph", err)
	})
	wg.Wait()
	t.Logf("calls racing deletes, by code: %v", counts)
	if counts[codes.OK] == 0 {
		t.Errorf("no call succeeded while racing deletes")
	}
	s.serving(t, "deletes racing loads, deltas, scores and exports")
}
