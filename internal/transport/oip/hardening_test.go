package oip

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/gcnserve/gcnserve/gen/inferencepb"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// TestRESTStrictInput: input the REST path used to accept leniently is
// refused naming the offending thing (issue 16, defect 7).
func TestRESTStrictInput(t *testing.T) {
	srv, backend := startFakeREST(t, Options{})
	row := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]" }
	raggedLong := `{"inputs":[{"name":"x","shape":[2,34],"datatype":"FP32","data":[` + row(34) + `,` + row(35) + `]},` +
		`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,1]}]}`
	ragged := `{"inputs":[{"name":"x","shape":[2,34],"datatype":"FP32","data":[` + row(33) + `,` + row(35) + `]},` +
		`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,1]}]}`
	raggedEdges := `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]},` +
		`{"name":"edge_index","shape":[2,2],"datatype":"INT64","data":[[0,1,1],[0]]}]}`
	mixed := `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,[2,3],4,5,6]},` +
		`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,1]}]}`
	deep := `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[[1,2,3]],[[4,5,6]]]},` +
		`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,1]}]}`
	rows := `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6],[]]},` +
		`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,1]}]}`
	head := `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}},` +
		`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,0]}]}`
	binaryBody := head + string(make([]byte, 12))
	hcl := func(v string) http.Header { return http.Header{headerContentLength: {v}} }
	cases := []struct {
		name, body string
		header     http.Header
		code       int
		substr     string
	}{
		{"ragged rows 33 and 35", ragged, nil, 400, `input "x": data: row [0] has 33 values, shape [2, 34] wants 34`},
		{"a row of 35 values", raggedLong, nil, 400, `input "x": data: row [1] has more than the 34 values shape [2, 34] wants`},
		{"ragged edge rows", raggedEdges, nil, 400, `input "edge_index": data: row [0] has more than the 2 values shape [2, 2] wants`},
		{"numbers and arrays mixed", mixed, nil, 400, `input "x": data: row [0]: an array among numbers`},
		{"deeper than the shape", deep, nil, 400, `arrays nest deeper than shape [2, 3]`},
		{"too many rows", rows, nil, 400, `input "x": data: more than the 2 rows shape [2, 3] wants`},
		{"header length +N", binaryBody, hcl("+" + strconv.Itoa(len(head))), 400, `Inference-Header-Content-Length: "+`},
		{"header length -0", binaryBody, hcl("-0"), 400, "is not a length"},
		{"header length 1e2", binaryBody, hcl("1e2"), 400, "is not a length"},
		{"binary_data_size fraction", strings.Replace(binaryBody, `"binary_data_size":12`, `"binary_data_size":12.5`, 1), hcl(strconv.Itoa(len(head) + 2)), 400, "binary_data_size must be a byte count"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got, _ := do(t, "POST", srv.URL+"/v2/models/gcn-karate/infer", c.body, c.header)
			msg, _ := got["error"].(string)
			if code != c.code || !strings.Contains(msg, c.substr) {
				t.Errorf("%d %q, want %d containing %q", code, msg, c.code, c.substr)
			}
		})
	}
	if _, n := backend.lastPredict(); n != 0 {
		t.Errorf("bad requests reached the model %d times", n)
	}
	// The strict header still takes a plain length.
	if code, got, _ := do(t, "POST", srv.URL+"/v2/models/gcn-karate/infer", binaryBody, hcl(strconv.Itoa(len(head)))); code != 200 {
		t.Errorf("binary request with a plain length: %d %v, want 200", code, got)
	}
}

// TestRESTContentEncoding: gzip and deflate bodies are decoded, a plain
// body labelled gzip is 400 naming the encoding, an unknown encoding 415,
// and a body that decompresses past the limit 413 naming it (issue 16,
// defect 7).
func TestRESTContentEncoding(t *testing.T) {
	srv, backend := startFakeREST(t, Options{MaxRequestBytes: 4096})
	var gz, zl bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write([]byte(jsonRequest))
	gw.Close()
	zw := zlib.NewWriter(&zl)
	zw.Write([]byte(jsonRequest))
	zw.Close()
	var bomb bytes.Buffer
	bw := gzip.NewWriter(&bomb)
	bw.Write(bytes.Repeat([]byte(" "), 1<<20)) // 1 MiB of spaces: 1 KiB compressed
	bw.Close()
	enc := func(v string) http.Header { return http.Header{"Content-Encoding": {v}} }
	cases := []struct {
		name, body string
		header     http.Header
		code       int
		substr     string
	}{
		{"gzip", gz.String(), enc("gzip"), 200, ""},
		{"x-gzip", gz.String(), enc("x-gzip"), 200, ""},
		{"deflate", zl.String(), enc("deflate"), 200, ""},
		{"identity", jsonRequest, enc("identity"), 200, ""},
		{"plain labelled gzip", jsonRequest, enc("gzip"), 400, "labelled Content-Encoding: gzip but does not decode as gzip"},
		{"plain labelled deflate", jsonRequest, enc("deflate"), 400, "labelled Content-Encoding: deflate but does not decode as deflate"},
		{"truncated gzip", gz.String()[:gz.Len()/2], enc("gzip"), 400, "does not decode as gzip"},
		{"br", jsonRequest, enc("br"), 415, `Content-Encoding "br" is not supported`},
		{"two codings", gz.String(), enc("gzip, gzip"), 415, "more than one coding"},
		{"gzip bomb", bomb.String(), enc("gzip"), 413, "decompresses (Content-Encoding: gzip) to more than 4096 bytes (--max-request-bytes)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got, _ := do(t, "POST", srv.URL+"/v2/models/gcn-karate/infer", c.body, c.header)
			msg, _ := got["error"].(string)
			if code != c.code || !strings.Contains(msg, c.substr) {
				t.Errorf("%d %q (%v), want %d containing %q", code, msg, got, c.code, c.substr)
			}
		})
	}
	if _, n := backend.lastPredict(); n != 4 {
		t.Errorf("the model ran %d times, want 4 (the decodable bodies)", n)
	}
	if begun, closed, _ := backend.counts(); begun != closed {
		t.Errorf("%d requests begun, %d closed: every refusal must release its reservation", begun, closed)
	}
}

// TestRESTInferBytesBoundsDecoding: RESTInferBytes, computed from the JSON
// head's tokens before decoding, bounds all the memory decodeRESTRequest
// allocates, on bodies built to amplify (issue 16, defect 4).
func TestRESTInferBytesBoundsDecoding(t *testing.T) {
	const n = 20000
	rep := func(s string, k int) string { return strings.TrimSuffix(strings.Repeat(s, k), ",") }
	input := func(name, dt, shape, data string) string {
		return `{"name":"` + name + `","datatype":"` + dt + `","shape":` + shape + `,"data":` + data + `}`
	}
	n2 := strconv.Itoa(n / 2)
	bodies := map[string]string{
		"empty inputs":       `{"inputs":[` + rep("{},", n) + `]}`,
		"empty outputs":      `{"outputs":[` + rep("{},", n) + `]}`,
		"long shape":         `{"inputs":[{"name":"x","datatype":"FP32","shape":[` + rep("1,", n) + `],"data":[1]}]}`,
		"parameter array":    `{"parameters":{"p":[` + rep("0,", n) + `]},"inputs":[]}`,
		"many parameters":    `{"parameters":{` + rep(`"a":0,`, n) + `}}`,
		"INT32 zeros":        `{"inputs":[` + input("edge_index", "INT32", "[2,"+n2+"]", "["+rep("0,", n)+"]") + `]}`,
		"INT64 nested zeros": `{"inputs":[` + input("edge_index", "INT64", "[2,"+n2+"]", "[["+rep("0,", n/2)+"],["+rep("0,", n/2)+"]]") + `]}`,
		"FP32 zeros":         `{"inputs":[` + input("x", "FP32", "["+n2+",2]", "["+rep("0,", n)+"]") + `]}`,
		"long names":         `{"id":"` + strings.Repeat("i", 8*n) + `","inputs":[{"name":"` + strings.Repeat("n", 8*n) + `"}]}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			b := []byte(body)
			bound := httpx.CountJSON(b).RESTInferBytes()
			var err error
			got := testenv.Allocated(func() { _, _, err = decodeRESTRequest(b, "") }) + int64(len(b))
			t.Logf("%d-byte body: allocated %d (%.1fx), bound %d (%.1fx), decode error: %t",
				len(b), got, float64(got)/float64(len(b)), bound, float64(bound)/float64(len(b)), err != nil)
			if got > bound {
				t.Errorf("decoding allocated %d bytes, more than the bound %d", got, bound)
			}
		})
	}
}

// amplifyingInferRequests are ModelInferRequests built so that each wire
// byte becomes as much memory as it can once decoded.
func amplifyingInferRequests(n int) map[string]*pb.ModelInferRequest {
	in := func(name, dt string, shape []int64, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: c}
	}
	empties := make([]*pb.ModelInferRequest_InferInputTensor, n)
	for i := range empties {
		empties[i] = &pb.ModelInferRequest_InferInputTensor{}
	}
	outs := make([]*pb.ModelInferRequest_InferRequestedOutputTensor, n)
	for i := range outs {
		outs[i] = &pb.ModelInferRequest_InferRequestedOutputTensor{}
	}
	params := map[string]*pb.InferParameter{}
	for i := range n / 4 {
		params[strconv.Itoa(i)] = &pb.InferParameter{}
	}
	return map[string]*pb.ModelInferRequest{
		"INT32 zeros": {Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("edge_index", "INT32", []int64{2, int64(n / 2)}, &pb.InferTensorContents{IntContents: make([]int32, n)})}},
		"INT64 zeros": {Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("edge_index", "INT64", []int64{2, int64(n / 2)}, &pb.InferTensorContents{Int64Contents: make([]int64, n)})}},
		"bool contents": {Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("x", "FP32", []int64{1, 1}, &pb.InferTensorContents{BoolContents: make([]bool, n)})}},
		"empty bytes contents": {Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("x", "BYTES", []int64{int64(n)}, &pb.InferTensorContents{BytesContents: make([][]byte, n)})}},
		"long shape":    {Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", make([]int64, n), nil)}},
		"empty inputs":  {Inputs: empties},
		"empty outputs": {Outputs: outs},
		"parameters":    {Parameters: params},
		"empty raw":     {RawInputContents: make([][]byte, n)},
		"INT32 raw": {Inputs: []*pb.ModelInferRequest_InferInputTensor{in("edge_index", "INT32", []int64{2, int64(n / 2)}, nil)},
			RawInputContents: [][]byte{make([]byte, 4*n)}},
	}
}

// TestInferRequestCountBoundsDecoding: countInferRequest, run on the wire
// bytes before decoding, bounds the memory proto.Unmarshal and
// decodeGRPCInputs allocate (issue 16, defect 4: 5 concurrent 60 MB
// INT32 requests used to peak at 4.1 GB on a 1 GiB budget).
func TestInferRequestCountBoundsDecoding(t *testing.T) {
	for name, m := range amplifyingInferRequests(20000) {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			c, err := countInferRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			got := testenv.Allocated(func() {
				in := new(pb.ModelInferRequest)
				if err := proto.Unmarshal(b, in); err != nil {
					t.Error(err)
					return
				}
				_, _ = decodeGRPCInputs(in)
			})
			t.Logf("%d wire bytes: allocated %d (%.1fx), bound %d (%.1fx)", len(b), got, float64(got)/float64(len(b)), c.decoded, float64(c.decoded)/float64(len(b)))
			if got > c.decoded {
				t.Errorf("decoding allocated %d bytes, more than the bound %d", got, c.decoded)
			}
		})
	}
}

// TestModelInferLimitsBeforeDecoding: a ModelInfer declaring more edges
// or nodes than the limits, or needing more memory than the budget, is
// refused from its wire bytes, before it is decoded (issue 16, defect 4).
func TestModelInferLimitsBeforeDecoding(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	backend.mu.Lock()
	backend.limits = Limits{MaxNodes: 100, MaxEdges: 1000, Budget: 8 << 20}
	backend.mu.Unlock()
	edges := func(n int, shape []int64) *pb.ModelInferRequest {
		r := typedRequest()
		for _, in := range r.Inputs {
			if in.Name == InputEdgeIndex {
				in.Datatype, in.Shape = "INT32", shape
				in.Contents = &pb.InferTensorContents{IntContents: make([]int32, n)}
			}
		}
		return r
	}
	nodes := typedRequest()
	nodes.Inputs[0].Shape = []int64{101, 3}
	cases := []struct {
		name   string
		req    *pb.ModelInferRequest
		code   codes.Code
		substr string
	}{
		{"INT32 zeros past --max-edges", edges(4000, []int64{2, 2}), codes.ResourceExhausted, "request has 2000 edges, limit is 1000 (--max-edges)"},
		{"declared edges past --max-edges", edges(2, []int64{2, 5000}), codes.ResourceExhausted, "request has 5000 edges, limit is 1000 (--max-edges)"},
		{"declared nodes past --max-nodes", nodes, codes.ResourceExhausted, "request has 101 nodes, limit is 100 (--max-nodes)"},
		{"1 MB of zero varints: 12 MB decoded, past the budget", edges(2000, []int64{2, 1000}), codes.OK, ""},
	}
	big := typedRequest()
	big.Inputs = append(big.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: "pad", Datatype: "INT32", Shape: []int64{1 << 20},
		Contents: &pb.InferTensorContents{IntContents: make([]int32, 1<<20)}})
	cases[3].req, cases[3].code, cases[3].substr = big, codes.ResourceExhausted, "more than the whole --max-inflight-bytes budget"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := client.ModelInfer(ctxT(t), c.req)
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.substr) {
				t.Errorf("%v, want %v containing %q", err, c.code, c.substr)
			}
		})
	}
	if _, n := backend.lastPredict(); n != 0 {
		t.Errorf("refused requests reached the model %d times", n)
	}
	if begun, closed, _ := backend.counts(); begun != closed {
		t.Errorf("%d requests begun, %d closed", begun, closed)
	}
}
