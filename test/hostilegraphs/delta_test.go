package hostilegraphs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// preCompressed is a codec whose messages are already gzip-compressed
// bytes: the call sends them as they are with grpc-encoding gzip.
type preCompressed struct{}

func (preCompressed) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (preCompressed) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (preCompressed) Name() string { return "proto" }

// passGzip is this test binary's "gzip" compressor: it passes bytes
// through, so a message already compressed (a bomb) goes out as it is,
// flagged compressed with grpc-encoding gzip. Only sendCompressed asks
// for it.
type passGzip struct{}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (passGzip) Compress(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }
func (passGzip) Decompress(r io.Reader) (io.Reader, error)    { return r, nil }
func (passGzip) Name() string                                 { return "gzip" }

func init() { encoding.RegisterCompressor(passGzip{}) }

func marshalJSON(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }

// TestDeltaBombs: a 200 MB delta gzipped to 200 KB (gRPC and HTTP) is
// refused (RESOURCE_EXHAUSTED, 413) once inflated past --max-request-bytes
// (16 MiB here), a 70 MB HTTP delta is refused from its Content-Length,
// and peak RSS grows by less than 128 MiB over all seven bombs: bounded by
// the limit, not by the 1.4 GB they inflate to.
func TestDeltaBombs(t *testing.T) {
	s := start(t, "GCNSERVE_MAX_REQUEST_BYTES="+strconv.Itoa(16<<20))
	s.create(t, "g", 10)
	ctx := callCtx(t, 60*time.Second)
	before := s.Memory(t, "VmHWM")

	b := testenv.GzipBomb(t, 2, 200<<20) // DeltaRequest.upsert_nodes
	t.Logf("bomb: %d bytes inflating to 200 MiB", len(b))
	for range 4 {
		// The message goes out as the client compressed it: grpc-go's
		// "gzip" compressor would compress it again, so send it raw with
		// the compressed flag through a stream that claims gzip.
		err := sendCompressed(ctx, s.conn, gcnpb.GraphService_ApplyDelta_FullMethodName, b)
		wantStatus(t, "ApplyDelta gzip bomb", err, codes.ResourceExhausted, "limit")
	}
	// 200 MB of JSON whitespace, compressed once, a megabyte at a time.
	var hb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&hb, gzip.BestCompression)
	zw.Write([]byte(`{"upsert_nodes": [`))
	spaces := bytes.Repeat([]byte(" "), 1<<20)
	for range 200 {
		zw.Write(spaces)
	}
	zw.Write([]byte(`]}`))
	zw.Close()
	for _, route := range []string{"/v1/graphs/g/deltas", "/v1/graphs", "/v1/graphs/g/score"} {
		code, body := s.do(t, "POST", route, hb.Bytes(), true, "Content-Encoding", "gzip", "Content-Type", "application/json")
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s gzip bomb: %d %.200q, want 413", route, code, body)
		}
	}
	huge := append([]byte(`{"remove_nodes": ["`), bytes.Repeat([]byte("x"), 70<<20)...)
	huge = append(huge, `"]}`...)
	if code, body := s.do(t, "POST", "/v1/graphs/g/deltas", huge, true); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "max-request-bytes") {
		t.Errorf("POST a 70 MB delta: %d %.200q, want 413 naming --max-request-bytes", code, body)
	}
	growth := s.Memory(t, "VmHWM") - before
	t.Logf("gzip bombs and a 70 MB delta: peak RSS grew by %s", mib(growth))
	if growth > 128<<20 {
		t.Errorf("peak RSS grew by %s under delta bombs, want under 128 MiB", mib(growth))
	}
	info, err := s.gc.GetGraph(callCtx(t, 30*time.Second), &gcnpb.GetGraphRequest{GraphId: "g"})
	if err != nil || info.Revision != 1 {
		t.Errorf("graph after the bombs: %v %v, want revision 1", info, err)
	}
	s.serving(t, "delta bombs")
}

// sendCompressed sends msg, already gzip-compressed, as method's request
// and returns the call's status.
func sendCompressed(ctx context.Context, conn *grpc.ClientConn, method string, msg []byte) error {
	var reply []byte
	return conn.Invoke(ctx, method, &msg, &reply, grpc.ForceCodec(preCompressed{}), grpc.UseCompressor("gzip"))
}

// TestDeltaDecodeAmplification: an ApplyDelta of 60 MB holding 30 million
// empty edges (2 bytes each on the wire, about 90 once decoded into
// generated structs) is refused or answered within the request budget:
// peak RSS grows by less than the budget plus 256 MiB.
func TestDeltaDecodeAmplification(t *testing.T) {
	const budget = 512 << 20
	s := start(t, "GCNSERVE_MAX_INFLIGHT_BYTES="+strconv.Itoa(budget))
	s.create(t, "g", 10)
	ctx := callCtx(t, 120*time.Second)
	msg := make([]byte, 0, 60<<20)
	for len(msg) < 60<<20-2 {
		msg = append(msg, 4<<3|2, 0) // add_edges: an empty Edge
	}
	before := s.Memory(t, "VmHWM")
	var reply []byte
	err := s.conn.Invoke(ctx, gcnpb.GraphService_ApplyDelta_FullMethodName, &msg, &reply, grpc.ForceCodec(preCompressed{}))
	growth := s.Memory(t, "VmHWM") - before
	t.Logf("ApplyDelta of 30M empty edges (60 MB): %v %.200q; peak RSS grew by %s", status.Code(err), status.Convert(err).Message(), mib(growth))
	if status.Code(err) == codes.OK || status.Code(err) == codes.Internal || status.Code(err) == codes.Unavailable {
		t.Errorf("ApplyDelta of 30M empty edges: %v, want a refusal naming what is wrong", err)
	}
	if growth > budget+256<<20 {
		t.Errorf("ApplyDelta of 30M empty edges: peak RSS grew by %s, want under the %s budget + 256 MiB", mib(growth), mib(budget))
	}
	s.serving(t, "a decode-amplifying delta")
}

// TestDeltaValidation: deltas naming unknown nodes, with NaN or the wrong
// number of features, removing a node twice, are refused naming the item
// (gRPC and HTTP alike) and change nothing; self loops are taken; the
// server keeps serving.
func TestDeltaValidation(t *testing.T) {
	s := start(t)
	s.create(t, "g", 10)
	ctx := callCtx(t, 120*time.Second)
	nan := node("q", 0)
	nan.Features[3] = float32(math.NaN())
	short := &gcnpb.Node{Id: "w", Features: make([]float32, 5)}
	cases := []struct {
		name string
		d    *gcnpb.DeltaRequest
		subs []string
	}{
		{"an edge to an unknown node", &gcnpb.DeltaRequest{AddEdges: []*gcnpb.Edge{edge("n1", "n2"), edge("n1", "nobody")}}, []string{"edge 1", `"nobody"`}},
		{"removing an unknown node", &gcnpb.DeltaRequest{RemoveNodes: []string{"nobody"}}, []string{"remove_nodes 0", `"nobody"`}},
		{"removing an edge the graph lacks", &gcnpb.DeltaRequest{RemoveEdges: []*gcnpb.Edge{edge("n1", "n5")}}, []string{"remove_edges 0", `"n1"`, `"n5"`}},
		{"NaN feature", &gcnpb.DeltaRequest{UpsertNodes: []*gcnpb.Node{nan}}, []string{`"q"`, "feature 3", "NaN"}},
		{"5 features of 34", &gcnpb.DeltaRequest{UpsertNodes: []*gcnpb.Node{short}}, []string{`"w"`, "5 features", "34"}},
		{"removing a node twice", &gcnpb.DeltaRequest{RemoveNodes: []string{"n3", "n3"}}, []string{"remove_nodes 1", "duplicate", `"n3"`}},
		{"an empty node id", &gcnpb.DeltaRequest{UpsertNodes: []*gcnpb.Node{node("", 1)}}, []string{"node 0", "empty id"}},
	}
	for _, c := range cases {
		c.d.GraphId = "g"
		_, err := s.gc.ApplyDelta(ctx, c.d)
		wantStatus(t, "gRPC delta with "+c.name, err, codes.InvalidArgument, c.subs...)
		if c.name == "NaN feature" {
			continue // JSON has no NaN number; protojson's "NaN" string is below
		}
		body, _ := marshalJSON(c.d)
		code, msg := s.do(t, "POST", "/v1/graphs/g/deltas", body, true)
		if code != http.StatusBadRequest || !containsAll(errorMessage(msg), c.subs) {
			t.Errorf("HTTP delta with %s: %d %.300q, want 400 naming %q", c.name, code, msg, c.subs)
		}
	}
	code, msg := s.do(t, "POST", "/v1/graphs/g/deltas", []byte(`{"upsert_nodes": [{"id": "q", "features": ["NaN"`+strings.Repeat(`, 0`, featureDim-1)+`]}]}`), true)
	if msg = errorMessage(msg); code != http.StatusBadRequest || !strings.Contains(msg, "NaN") || !strings.Contains(msg, `"q"`) {
		t.Errorf(`HTTP delta with a "NaN" feature: %d %.300q, want 400 naming the node and NaN`, code, msg)
	}
	// Removing a node in one delta, then again in the next.
	if _, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "g", RemoveNodes: []string{"n4"}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "g", RemoveNodes: []string{"n4"}})
	wantStatus(t, "removing a removed node", err, codes.InvalidArgument, `"n4"`, "not a node id")
	// Self loops are graph content: taken, counted, exported.
	res, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "g", AddEdges: []*gcnpb.Edge{edge("n1", "n1"), edge("n1", "n1")}})
	if err != nil {
		t.Fatalf("delta of two self loops: %v", err)
	}
	info, err := s.gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "g"})
	if err != nil || info.Revision != res.Revision || info.Revision != 3 || info.Edges != 10-2+2 {
		t.Errorf("graph after the refused deltas, a removal and two self loops: %v %v, want revision 3 and 10 edges", info, err)
	}
	if _, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n1"}}); err != nil {
		t.Errorf("score of a node with self loops: %v", err)
	}

	s.serving(t, "invalid deltas")
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestMillionEdgeDelta: a delta of a million edges among ten nodes (a
// multigraph of hubs) is applied or refused naming a limit, and a score
// of two of its nodes then answers within 30 s. In incremental mode (the
// default model has a verified layer description) a per-layer state that
// walked every listing would take 4e10 steps here; the engine keeps each
// neighbour once with its multiplicity (internal/incremental).
func TestMillionEdgeDelta(t *testing.T) {
	s := start(t)
	s.create(t, "g", 10)
	ctx := callCtx(t, 120*time.Second)
	// A million edges in one delta.
	million := &gcnpb.DeltaRequest{GraphId: "g"}
	for i := range 1_000_000 {
		million.AddEdges = append(million.AddEdges, edge("n"+strconv.Itoa(i%10), "n"+strconv.Itoa((i*7+1)%10)))
	}
	began := time.Now()
	res, err := s.gc.ApplyDelta(ctx, million)
	applied := time.Since(began)
	t.Logf("delta of 1,000,000 edges: %v after %v", err, time.Since(began).Round(time.Millisecond))
	if err != nil && status.Code(err) != codes.ResourceExhausted {
		t.Errorf("delta of 1,000,000 edges: %v, want applied or RESOURCE_EXHAUSTED naming a limit", err)
	}
	if err == nil {
		began = time.Now()
		sc, err := s.gc.ScoreNodes(callCtx(t, 30*time.Second), &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n0", "n9"}})
		t.Logf("then a score of 2 nodes: %v after %v", err, time.Since(began).Round(time.Millisecond))
		if err != nil || sc.Revision != res.Revision {
			t.Errorf("score after the million-edge delta (applied in %v): %v %v, want revision %d within 30s", applied, sc.GetRevision(), err, res.Revision)
		}
	}
	s.serving(t, "a delta of a million edges")
}
