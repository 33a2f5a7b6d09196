package oip

import (
	"context"
	"encoding/binary"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/gcnserve/gcnserve/gcn"
	pb "github.com/gcnserve/gcnserve/gen/inferencepb"
)

// The test graph: 4 nodes with 3 features, edges 0->1, 1->2, 0->3.
var (
	testFeatures = []float32{1, 0, 0, 0, 2, 0, 0, 0, 3, 0.5, 0.5, 0}
	testEdges    = []int64{0, 1, 0, 1, 2, 3}
)

// startFakeGRPC serves the transport on a fake backend over bufconn.
func startFakeGRPC(t *testing.T) (pb.GRPCInferenceServiceClient, *fakeBackend, *grpc.ClientConn) {
	t.Helper()
	backend := newFakeBackend()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	New(backend, Options{ServerVersion: "test", Logger: discardLogger}).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn), backend, conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func typedRequest() *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName: "gcn-karate",
		Id:        "req-7",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{4, 3}, Contents: &pb.InferTensorContents{Fp32Contents: testFeatures}},
			{Name: "edge_index", Datatype: "INT64", Shape: []int64{2, 3}, Contents: &pb.InferTensorContents{Int64Contents: testEdges}},
		},
	}
}

func wantScores() []float32 {
	t := Tensors{NumNodes: 4, Features: testFeatures, EdgeIndex: testEdges}
	out := make([]float32, 4)
	for i := range out {
		out[i] = fakeScore(t, i)
	}
	return out
}

func TestGRPCHealthAndMetadata(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	ctx := ctxT(t)
	live, err := client.ServerLive(ctx, &pb.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Fatalf("ServerLive = %v, %v; want live", live, err)
	}
	ready, err := client.ServerReady(ctx, &pb.ServerReadyRequest{})
	if err != nil || !ready.GetReady() {
		t.Fatalf("ServerReady = %v, %v; want ready", ready, err)
	}
	backend.mu.Lock()
	backend.ready = false
	backend.loading["gcn-cora"] = true
	backend.mu.Unlock()
	if ready, err := client.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || ready.GetReady() {
		t.Fatalf("ServerReady while not ready = %v, %v; want not ready", ready, err)
	}
	if r, err := client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "gcn-cora"}); err != nil || r.GetReady() {
		t.Fatalf("ModelReady(loading) = %v, %v; want not ready", r, err)
	}
	if r, err := client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "gcn-karate", Version: "1"}); err != nil || !r.GetReady() {
		t.Fatalf("ModelReady(gcn-karate 1) = %v, %v; want ready", r, err)
	}
	_, err = client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "nope"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("ModelReady(nope) error = %v; want NotFound naming the model", err)
	}

	md, err := client.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
	if err != nil || md.GetName() != "gcnserve" || md.GetVersion() != "test" {
		t.Fatalf("ServerMetadata = %v, %v", md, err)
	}

	mm, err := client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "gcn-karate"})
	if err != nil {
		t.Fatal(err)
	}
	if mm.GetName() != "gcn-karate" || mm.GetPlatform() != "onnxruntime_onnx" || !slices.Equal(mm.GetVersions(), []string{"1", "2"}) {
		t.Errorf("ModelMetadata name/platform/versions = %q %q %q", mm.GetName(), mm.GetPlatform(), mm.GetVersions())
	}
	type tm struct {
		name, dt string
		shape    []int64
	}
	var got []tm
	for _, x := range append(mm.GetInputs(), mm.GetOutputs()...) {
		got = append(got, tm{x.GetName(), x.GetDatatype(), x.GetShape()})
	}
	want := []tm{{"x", "FP32", []int64{-1, 3}}, {"edge_index", "INT64", []int64{2, -1}},
		{"scores", "FP32", []int64{-1}}, {"probabilities", "FP32", []int64{-1, 2}}, {"predictions", "INT64", []int64{-1}}}
	if !slices.EqualFunc(got, want, func(a, b tm) bool { return a.name == b.name && a.dt == b.dt && slices.Equal(a.shape, b.shape) }) {
		t.Errorf("ModelMetadata tensors = %v, want %v", got, want)
	}
	if _, err := client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "gcn-karate", Version: "9"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelMetadata(version 9) error = %v, want NotFound", err)
	}
}

func TestGRPCInferTyped(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	res, err := client.ModelInfer(ctxT(t), typedRequest())
	if err != nil {
		t.Fatal(err)
	}
	if res.GetModelName() != "gcn-karate" || res.GetModelVersion() != "2" || res.GetId() != "req-7" {
		t.Errorf("response model/version/id = %q %q %q, want gcn-karate 2 req-7", res.GetModelName(), res.GetModelVersion(), res.GetId())
	}
	if len(res.GetRawOutputContents()) != 0 {
		t.Errorf("typed request got raw_output_contents")
	}
	got, _ := backend.lastPredict()
	if got.NumNodes != 4 || !slices.Equal(got.Features, testFeatures) || !slices.Equal(got.EdgeIndex, testEdges) {
		t.Errorf("model got %+v, want the request's tensors", got)
	}
	outs := res.GetOutputs()
	if len(outs) != 3 || outs[0].GetName() != "scores" || outs[1].GetName() != "probabilities" || outs[2].GetName() != "predictions" {
		t.Fatalf("outputs = %v, want scores, probabilities, predictions", outs)
	}
	scores := wantScores()
	if got := outs[0].GetContents().GetFp32Contents(); !slices.Equal(got, scores) || !slices.Equal(outs[0].GetShape(), []int64{4}) || outs[0].GetDatatype() != "FP32" {
		t.Errorf("scores = %v %v %s, want %v [4] FP32", got, outs[0].GetShape(), outs[0].GetDatatype(), scores)
	}
	if got := outs[1].GetContents().GetFp32Contents(); len(got) != 8 || got[2] != scores[1] || !slices.Equal(outs[1].GetShape(), []int64{4, 2}) {
		t.Errorf("probabilities = %v %v, want [4, 2] with column 0 = scores", got, outs[1].GetShape())
	}
	var classes []int64
	for _, s := range scores {
		classes = append(classes, map[bool]int64{true: 0, false: 1}[s >= 0.5])
	}
	if got := outs[2].GetContents().GetInt64Contents(); !slices.Equal(got, classes) || outs[2].GetDatatype() != "INT64" {
		t.Errorf("predictions = %v %s, want %v INT64", got, outs[2].GetDatatype(), classes)
	}
	if begun, closed, finished := backend.counts(); begun != 1 || closed != 1 || finished != 1 || backend.wire <= 0 {
		t.Errorf("serving requests: %d begun, %d closed, %d finished, %d wire bytes; want 1, 1, 1, > 0", begun, closed, finished, backend.wire)
	}
}

func TestGRPCInferRaw(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	x := make([]byte, 4*len(testFeatures))
	for i, v := range testFeatures {
		binary.LittleEndian.PutUint32(x[4*i:], math.Float32bits(v))
	}
	e := make([]byte, 4*len(testEdges)) // INT32 this time
	for i, v := range testEdges {
		binary.LittleEndian.PutUint32(e[4*i:], uint32(v))
	}
	req := &pb.ModelInferRequest{
		ModelName:    "gcn-karate",
		ModelVersion: "1",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "edge_index", Datatype: "INT32", Shape: []int64{2, 3}},
			{Name: "x", Datatype: "FP32", Shape: []int64{4, 3}},
		},
		Outputs:          []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "predictions"}, {Name: "scores"}},
		RawInputContents: [][]byte{e, x},
	}
	res, err := client.ModelInfer(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetModelVersion() != "1" {
		t.Errorf("model_version = %q, want 1", res.GetModelVersion())
	}
	got, _ := backend.lastPredict()
	if !slices.Equal(got.Features, testFeatures) || !slices.Equal(got.EdgeIndex, testEdges) {
		t.Errorf("model got %+v, want the request's tensors", got)
	}
	outs, raw := res.GetOutputs(), res.GetRawOutputContents()
	if len(outs) != 2 || outs[0].GetName() != "predictions" || outs[1].GetName() != "scores" || len(raw) != 2 {
		t.Fatalf("outputs %v with %d raw entries; want predictions, scores and 2 raw", outs, len(raw))
	}
	if outs[0].GetContents() != nil || outs[1].GetContents() != nil {
		t.Errorf("raw response also sets typed contents")
	}
	scores := wantScores()
	if len(raw[1]) != 16 {
		t.Fatalf("raw scores: %d bytes, want 16", len(raw[1]))
	}
	for i, want := range scores {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[1][4*i:])); got != want {
			t.Errorf("raw score %d = %v, want %v", i, got, want)
		}
	}
	if len(raw[0]) != 32 {
		t.Errorf("raw predictions: %d bytes, want 32 (4 INT64)", len(raw[0]))
	}
}

func TestGRPCEmptyGraph(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	req := &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{0, 3}, Contents: &pb.InferTensorContents{}},
		{Name: "edge_index", Datatype: "INT64", Shape: []int64{2, 0}, Contents: &pb.InferTensorContents{}},
	}}
	res, err := client.ModelInfer(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := backend.lastPredict(); got.NumNodes != 0 || len(got.Features) != 0 || len(got.EdgeIndex) != 0 {
		t.Errorf("model got %+v, want an empty graph", got)
	}
	if res.GetModelName() != "gcn-karate" || len(res.GetOutputs()) != 3 || !slices.Equal(res.GetOutputs()[1].GetShape(), []int64{0, 2}) {
		t.Errorf("empty graph response = %v", res)
	}
}

// TestGRPCInvalid checks that every bad request is INVALID_ARGUMENT (or the
// error table's code) with a message naming the tensor, and never reaches
// the model.
func TestGRPCInvalid(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	fp := func(v ...float32) *pb.InferTensorContents { return &pb.InferTensorContents{Fp32Contents: v} }
	i64 := func(v ...int64) *pb.InferTensorContents { return &pb.InferTensorContents{Int64Contents: v} }
	x := func(shape []int64, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: "x", Datatype: "FP32", Shape: shape, Contents: c}
	}
	edges := func(dt string, shape []int64, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: "edge_index", Datatype: dt, Shape: shape, Contents: c}
	}
	goodX := x([]int64{2, 3}, fp(1, 2, 3, 4, 5, 6))
	goodE := edges("INT64", []int64{2, 1}, i64(0, 1))
	cases := []struct {
		name   string
		req    *pb.ModelInferRequest
		code   codes.Code
		substr string
	}{
		{"missing x", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodE}}, codes.InvalidArgument, `input "x" is missing`},
		{"missing edges", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX}}, codes.InvalidArgument, `input "edge_index" is missing`},
		{"x twice", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, goodX, goodE}}, codes.InvalidArgument, `input "x" given twice`},
		{"unknown input", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, goodE,
			{Name: "y", Datatype: "FP32", Shape: []int64{1}, Contents: fp(1)}}}, codes.InvalidArgument, `unknown input "y"`},
		{"edge weights", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, goodE,
			{Name: "edge_weight", Datatype: "FP32", Shape: []int64{1}, Contents: fp(1)}}}, codes.InvalidArgument, `input "edge_weight": this model takes no edge weights`},
		{"x FP64", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP64", Shape: []int64{2, 3}, Contents: &pb.InferTensorContents{Fp64Contents: []float64{1, 2, 3, 4, 5, 6}}}, goodE}},
			codes.InvalidArgument, `input "x": datatype "FP64"`},
		{"x INT64", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "INT64", Shape: []int64{2, 3}, Contents: i64(1, 2, 3, 4, 5, 6)}, goodE}},
			codes.InvalidArgument, `input "x": datatype "INT64", want FP32`},
		{"edges FP32", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, edges("FP32", []int64{2, 1}, fp(0, 1))}},
			codes.InvalidArgument, `input "edge_index": datatype "FP32", want INT64 or INT32`},
		{"x wrong field", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{x([]int64{2, 3}, i64(1, 2, 3, 4, 5, 6)), goodE}},
			codes.InvalidArgument, `input "x": datatype FP32 takes contents.fp32_contents, not contents.int64_contents`},
		{"x wrong width", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{x([]int64{3, 2}, fp(1, 2, 3, 4, 5, 6)), goodE}},
			codes.InvalidArgument, `input "x": shape [3, 2], want [N, 3]`},
		{"x rank 1", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{x([]int64{6}, fp(1, 2, 3, 4, 5, 6)), goodE}},
			codes.InvalidArgument, `input "x": shape [6], want [N, 3]`},
		{"x short", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{x([]int64{2, 3}, fp(1, 2, 3)), goodE}},
			codes.InvalidArgument, `input "x": shape [2, 3] needs 6 elements, contents.fp32_contents has 3`},
		{"x negative dim", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{x([]int64{-2, 3}, fp(1)), goodE}},
			codes.InvalidArgument, `input "x": shape [-2, 3] has a negative dimension`},
		{"x huge shape", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{x([]int64{1 << 40, 1 << 40}, fp(1)), goodE}},
			codes.InvalidArgument, `input "x": shape [1099511627776, 1099511627776] has too many elements`},
		{"edges rank", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, edges("INT64", []int64{1, 2}, i64(0, 1))}},
			codes.InvalidArgument, `input "edge_index": shape [1, 2], want [2, E]`},
		{"unknown datatype", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, edges("BF16", []int64{2, 1}, nil)}},
			codes.InvalidArgument, `input "edge_index": datatype "BF16" is not one this model takes`},
		{"unknown output", func() *pb.ModelInferRequest {
			r := &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, goodE}}
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "logits"}}
			return r
		}(), codes.InvalidArgument, `unknown output "logits"`},
		{"raw and contents", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, goodE},
			RawInputContents: [][]byte{make([]byte, 24), make([]byte, 16)}}, codes.InvalidArgument, `input "x": contents is set, but the request uses raw_input_contents`},
		{"raw and empty contents is fine, but not both raw and data", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{2, 3}, Contents: &pb.InferTensorContents{}}, goodE},
			RawInputContents: [][]byte{make([]byte, 24), make([]byte, 16)}}, codes.InvalidArgument, `input "edge_index": contents is set`},
		{"raw count", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{2, 3}}, {Name: "edge_index", Datatype: "INT64", Shape: []int64{2, 1}}},
			RawInputContents: [][]byte{make([]byte, 24)}}, codes.InvalidArgument, `raw_input_contents has 1 entries for 2 inputs`},
		{"raw size", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{2, 3}}, {Name: "edge_index", Datatype: "INT64", Shape: []int64{2, 1}}},
			RawInputContents: [][]byte{make([]byte, 24), make([]byte, 12)}}, codes.InvalidArgument, `input "edge_index": raw contents have 12 bytes; shape [2, 1] of INT64 needs 16`},
		{"unknown model", &pb.ModelInferRequest{ModelName: "nope", Inputs: []*pb.ModelInferRequest_InferInputTensor{goodX, goodE}},
			codes.NotFound, `model "nope" is not served`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := client.ModelInfer(ctxT(t), c.req)
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.substr) {
				t.Errorf("error = %v, want %v containing %q", err, c.code, c.substr)
			}
		})
	}
	if _, n := backend.lastPredict(); n != 0 {
		t.Errorf("bad requests reached the model %d times", n)
	}
	if begun, closed, _ := backend.counts(); begun != closed {
		t.Errorf("%d requests began, %d closed", begun, closed)
	}
}

func TestGRPCBackendErrors(t *testing.T) {
	client, backend, _ := startFakeGRPC(t)
	for _, c := range []struct {
		err  error
		code codes.Code
	}{
		{tooLargef("request has 120000 nodes, limit is 100000 (--max-nodes)"), codes.ResourceExhausted},
		{gcn.Errorf(gcn.KindOverloaded, "memory budget exhausted"), codes.ResourceExhausted},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{gcn.Errorf(gcn.KindUnavailable, "server is shutting down"), codes.Unavailable},
		{errorString("onnxruntime exploded"), codes.Internal},
	} {
		backend.mu.Lock()
		backend.err = c.err
		backend.mu.Unlock()
		_, err := client.ModelInfer(ctxT(t), typedRequest())
		if status.Code(err) != c.code {
			t.Errorf("backend error %v: got %v, want %v", c.err, err, c.code)
		}
		if c.code == codes.Internal && strings.Contains(err.Error(), "exploded") {
			t.Errorf("internal detail leaked to the client: %v", err)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestGRPCUnimplemented checks that a method of Triton's protocol that is
// not served here (and an unknown one) is UNIMPLEMENTED.
func TestGRPCUnimplemented(t *testing.T) {
	_, _, conn := startFakeGRPC(t)
	for _, method := range []string{"/inference.GRPCInferenceService/ModelStreamInfer", "/inference.GRPCInferenceService/RepositoryIndex"} {
		err := conn.Invoke(ctxT(t), method, &pb.ServerLiveRequest{}, &pb.ServerLiveResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: %v, want Unimplemented", method, err)
		}
	}
}
