package hostilegraphs

import (
	"context"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// chunkOf is a LoadGraph chunk of n fresh nodes named prefix0..prefix(n-1)
// (and no edges).
func chunkOf(prefix string, n int) *gcnpb.LoadGraphChunk {
	c := &gcnpb.LoadGraphChunk{}
	for i := range n {
		c.Nodes = append(c.Nodes, node(prefix+strconv.Itoa(i), i))
	}
	return c
}

// TestLoadGraphStalled: a LoadGraph stream that sends two chunks and then
// nothing is cut off (DEADLINE_EXCEEDED) once --request-read-timeout
// passes without a chunk; what it sent counts in --max-graph-bytes while
// it waits (another load that would not fit beside it is refused naming
// the budget) and is released when it is cut (the same load then fits);
// other clients are served meanwhile; the graph never appears.
func TestLoadGraphStalled(t *testing.T) {
	const readTimeout = 2 * time.Second
	s := start(t, "GCNSERVE_REQUEST_READ_TIMEOUT="+readTimeout.String(), "GCNSERVE_MAX_GRAPH_BYTES="+strconv.Itoa(6<<20))
	ctx := callCtx(t, 60*time.Second)

	stalled, err := s.gc.LoadGraph(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := chunkOf("a", 10_000) // about 2 MB of graph
	first.GraphId = "stalled"
	if err := stalled.Send(first); err != nil {
		t.Fatal(err)
	}
	if err := stalled.Send(chunkOf("b", 5_000)); err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()
	time.Sleep(300 * time.Millisecond) // the chunks arrived

	// Served meanwhile.
	began := time.Now()
	s.create(t, "small", 10)
	if took := time.Since(began); took > time.Second {
		t.Errorf("CreateGraph beside a stalled LoadGraph took %v, want under 1s", took)
	}
	// 15,000 nodes (about 3.5 MB once a graph) are pending in the stalled
	// stream: 15,000 more do not fit a 6 MiB budget beside them.
	load := func(id string) error {
		st, err := s.gc.LoadGraph(ctx)
		if err != nil {
			return err
		}
		c := chunkOf("c", 15_000)
		c.GraphId = id
		if err := st.Send(c); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = st.CloseAndRecv()
		return err
	}
	err = load("beside")
	wantStatus(t, "a 15,000-node LoadGraph beside a stalled one holding 15,000 nodes, 6 MiB budget", err, codes.ResourceExhausted, "--max-graph-bytes")

	// Wait for the stream's end without ending it (no CloseSend).
	err = stalled.RecvMsg(new(gcnpb.GraphInfo))
	cut := time.Since(sentAt)
	t.Logf("stalled LoadGraph ended after %v: %v", cut.Round(time.Millisecond), err)
	wantStatus(t, "stalled LoadGraph", err, codes.DeadlineExceeded)
	if cut > readTimeout+3*time.Second {
		t.Errorf("stalled LoadGraph cut off after %v, want within --request-read-timeout %v (+3s)", cut, readTimeout)
	}
	if _, err := s.gc.GetGraph(callCtx(t, 5*time.Second), &gcnpb.GetGraphRequest{GraphId: "stalled"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetGraph of the stalled load: %v, want NOT_FOUND", err)
	}
	if err := load("after"); err != nil {
		t.Errorf("the same 15,000-node LoadGraph once the stalled one was cut: %v, want OK (its budget released)", err)
	}
	s.serving(t, "a stalled LoadGraph")
}

// rawChunkCodec sends pre-encoded LoadGraph chunks.
type rawChunkCodec struct{}

func (rawChunkCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawChunkCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawChunkCodec) Name() string { return "proto" }

// TestLoadGraphLies: a LoadGraph that sends more than --max-graph-bytes is
// refused while it streams, naming the budget; edges naming nodes no chunk
// sent, ids repeated across chunks and a chunk whose bytes declare more
// than they hold are INVALID_ARGUMENT naming the item; a stream the client
// abandons leaves no graph, and a Score on its id is NOT_FOUND.
func TestLoadGraphLies(t *testing.T) {
	s := start(t, "GCNSERVE_MAX_GRAPH_BYTES="+strconv.Itoa(8<<20))
	ctx := callCtx(t, 120*time.Second)

	// Beyond the budget: 20 chunks of 10,000 nodes (about 35 MB counted).
	st, err := s.gc.LoadGraph(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for i := range 20 {
		c := chunkOf("c"+strconv.Itoa(i)+"-", 10_000)
		if i == 0 {
			c.GraphId = "huge"
		}
		if err := st.Send(c); err != nil {
			break // the server ended the stream
		}
		sent++
	}
	_, err = st.CloseAndRecv()
	t.Logf("LoadGraph past an 8 MiB budget: ended after %d of 20 chunks sent: %v", sent, err)
	wantStatus(t, "LoadGraph of 200,000 nodes on an 8 MiB --max-graph-bytes", err, codes.ResourceExhausted, "--max-graph-bytes")
	if sent == 20 {
		t.Errorf("LoadGraph past the budget: all 20 chunks (about 4x the budget) were taken before the refusal, want it refused as the chunks arrive")
	}

	loadAll := func(chunks ...*gcnpb.LoadGraphChunk) error {
		st, err := s.gc.LoadGraph(ctx)
		if err != nil {
			return err
		}
		for _, c := range chunks {
			if err := st.Send(c); err != nil {
				break
			}
		}
		_, err = st.CloseAndRecv()
		return err
	}
	// An edge naming a node no chunk sent.
	c1 := chunkOf("n", 100)
	c1.GraphId = "liar"
	c2 := &gcnpb.LoadGraphChunk{Edges: []*gcnpb.Edge{edge("n1", "n2"), edge("n3", "ghost")}}
	wantStatus(t, "LoadGraph with an edge to a node never sent", loadAll(c1, c2), codes.InvalidArgument, `"ghost"`, "edge 1")
	// The same id in two chunks.
	c3 := chunkOf("n", 10)
	wantStatus(t, "LoadGraph with an id in two chunks", loadAll(c1, c3), codes.InvalidArgument, "duplicate id", `"n0"`)
	// A chunk whose nodes field declares 1,000 bytes and holds 10.
	var lie []byte
	lie = protowire.AppendTag(lie, 1, protowire.BytesType)
	lie = protowire.AppendString(lie, "liar")
	lie = protowire.AppendTag(lie, 4, protowire.BytesType)
	lie = protowire.AppendVarint(lie, 1000)
	lie = append(lie, make([]byte, 10)...)
	cs, err := s.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, gcnpb.GraphService_LoadGraph_FullMethodName, grpc.ForceCodec(rawChunkCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	cs.SendMsg(&lie)
	cs.CloseSend()
	var reply []byte
	err = cs.RecvMsg(&reply)
	wantStatus(t, "LoadGraph chunk declaring 1,000 bytes of nodes and holding 10", err, codes.InvalidArgument)
	if _, err := s.gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "liar"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetGraph after the refused loads: %v, want NOT_FOUND", err)
	}

	// Abandoned mid-way, then a score on its id.
	actx, cancel := context.WithCancel(ctx)
	ab, err := s.gc.LoadGraph(actx)
	if err != nil {
		t.Fatal(err)
	}
	c := chunkOf("n", 1000)
	c.GraphId = "abandoned"
	ab.Send(c)
	time.Sleep(200 * time.Millisecond)
	_, err = s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "abandoned", NodeIds: []string{"n0"}})
	wantStatus(t, "ScoreNodes of a graph whose load has not ended", err, codes.NotFound, `"abandoned"`)
	cancel()
	time.Sleep(200 * time.Millisecond)
	_, err = s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "abandoned", NodeIds: []string{"n0"}})
	wantStatus(t, "ScoreNodes of a graph whose load was abandoned", err, codes.NotFound, `"abandoned"`)
	s.create(t, "abandoned", 10) // the id is free
	s.serving(t, "lying LoadGraph streams")
}
