package hostilegraphs

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// elementsWanted is how many empty elements each attack sends: 60 MB on
// the wire (2 bytes each), inside the default --max-request-bytes (64 MiB),
// 30 times the default --max-nodes and 3 times --max-edges.
const elementsWanted = 30_000_000

// maxGrowth is how far peak RSS may grow under one attack: the message
// held compressed and inflated (60 MB, copied once), nothing per element.
const maxGrowth = 200 << 20

// gzipped is head followed by n copies of elem, gzip-compressed at the
// best level, a megabyte at a time: 60 MB of empty elements become about
// 60 KB.
func gzipped(t *testing.T, head, elem []byte, n int, tail []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(head)
	per := (1 << 20) / len(elem)
	chunk := bytes.Repeat(elem, per)
	for left := n; left > 0; left -= per {
		zw.Write(chunk[:min(left, per)*len(elem)])
	}
	zw.Write(tail)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// emptyElements is the wire form of n empty elements of length-delimited
// field num (an empty string or message each: 2 bytes), inside field outer
// when outer > 0, after a graph_id (field 1) of "g".
func emptyElements(t *testing.T, outer, num protowire.Number, n int) []byte {
	t.Helper()
	head := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "g")
	elem := protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.BytesType), 0)
	if outer > 0 {
		head = protowire.AppendTag(head, outer, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(n*len(elem)))
	}
	return gzipped(t, head, elem, n, nil)
}

// TestCountedBeforeDecoding: a request of 30 million empty node ids,
// nodes, or edges (60 MB, gzip-compressed to about 60 KB: inside
// --max-request-bytes, and inside the default budget's decode bound; over
// HTTP 21 million JSON strings) is refused RESOURCE_EXHAUSTED (413 over
// HTTP) naming the field and
// --max-nodes or --max-edges, from its wire bytes: peak RSS grows by less
// than 200 MiB (before the count, ScoreNodes decoded all 30 million ids
// first: +1.8 GB), and the server keeps serving. Each attack runs on a
// fresh server so its peak is its own.
func TestCountedBeforeDecoding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, s *server) error
		field  string
		flag   string
	}{
		{"ScoreNodes", func(t *testing.T, s *server) error {
			msg := emptyElements(t, 0, 2, elementsWanted) // ScoreRequest.node_ids
			t.Logf("ScoreNodes of %d empty ids: %d bytes gzip-compressed", elementsWanted, len(msg))
			return sendCompressed(callCtx(t, 120*time.Second), s.conn, gcnpb.GraphService_ScoreNodes_FullMethodName, msg)
		}, "node_ids", "--max-nodes"},
		{"CreateGraph", func(t *testing.T, s *server) error {
			msg := emptyElements(t, 4, 1, elementsWanted) // CreateGraphRequest.graph.nodes
			return sendCompressed(callCtx(t, 120*time.Second), s.conn, gcnpb.GraphService_CreateGraph_FullMethodName, msg)
		}, "graph.nodes", "--max-nodes"},
		{"ApplyDelta", func(t *testing.T, s *server) error {
			msg := emptyElements(t, 0, 3, elementsWanted) // DeltaRequest.remove_nodes
			return sendCompressed(callCtx(t, 120*time.Second), s.conn, gcnpb.GraphService_ApplyDelta_FullMethodName, msg)
		}, "remove_nodes", "--max-nodes"},
		{"LoadGraph", func(t *testing.T, s *server) error {
			msg := emptyElements(t, 0, 5, elementsWanted) // LoadGraphChunk.edges
			cs, err := s.conn.NewStream(callCtx(t, 120*time.Second), &grpc.StreamDesc{ClientStreams: true},
				gcnpb.GraphService_LoadGraph_FullMethodName, grpc.ForceCodec(preCompressed{}), grpc.UseCompressor("gzip"))
			if err != nil {
				t.Fatal(err)
			}
			cs.SendMsg(&msg) // may fail once the server has answered: RecvMsg has its status
			cs.CloseSend()
			var reply []byte
			return cs.RecvMsg(&reply)
		}, "edges", "--max-edges"},
		{"HTTP score", func(t *testing.T, s *server) error {
			return s.postStrings(t, "/v1/graphs/g/score", "node_ids")
		}, "node_ids", "--max-nodes"},
		{"HTTP delta", func(t *testing.T, s *server) error {
			return s.postStrings(t, "/v1/graphs/g/deltas", "removeNodes")
		}, "remove_nodes", "--max-nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			s.create(t, "g", 10)
			before := s.Memory(t, "VmHWM")
			began := time.Now()
			err := tc.attack(t, s)
			took := time.Since(began)
			growth := s.Memory(t, "VmHWM") - before
			t.Logf("%s of 60 MB of empty elements: %v %.200q after %v; peak RSS %s -> +%s",
				tc.name, status.Code(err), status.Convert(err).Message(), took.Round(time.Millisecond), mib(before), mib(growth))
			wantStatus(t, tc.name+" of 60 MB of empty elements", err, codes.ResourceExhausted, tc.field, tc.flag)
			if growth > maxGrowth {
				t.Errorf("%s of 60 MB of empty elements: peak RSS grew by %s, want under %s", tc.name, mib(growth), mib(maxGrowth))
			}
			s.serving(t, tc.name+" of 60 MB of empty elements")
		})
	}
}

// postStrings posts a gzip-compressed JSON body whose field key holds 21
// million empty strings (`"",` each: 63 MB, inside --max-request-bytes) to
// path and returns its refusal as a status: RESOURCE_EXHAUSTED for a 413,
// UNKNOWN naming any other answer.
func (s *server) postStrings(t *testing.T, path, key string) error {
	t.Helper()
	const n = 21_000_000
	body := gzipped(t, []byte(`{"`+key+`": [`), []byte(`"",`), n-1, []byte(`""]}`))
	code, out := s.do(t, "POST", path, body, true, "Content-Encoding", "gzip", "Content-Type", "application/json")
	if code != http.StatusRequestEntityTooLarge {
		return status.Errorf(codes.Unknown, "HTTP %d: %s", code, errorMessage(out))
	}
	return status.Error(codes.ResourceExhausted, errorMessage(out))
}
