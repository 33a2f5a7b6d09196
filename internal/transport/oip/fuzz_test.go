package oip

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"

	pb "github.com/gcnserve/gcnserve/gen/inferencepb"
)

// fuzzInfo is the model the fuzz targets decode for: 3 features, 2 classes.
var fuzzInfo = Info{FeatureDim: 3, NumClasses: 2}

// checkDecoded asserts what every accepted request must satisfy (tensors
// whose sizes agree; the values are gcn.Model.Predict's to check), and that
// every refused one is refused as bad input (never a panic, never an
// internal error).
func checkDecoded(t *testing.T, tensors Tensors, err error) {
	t.Helper()
	if err != nil {
		var e *gcn.Error
		if !errors.As(err, &e) || e.Kind != gcn.KindInvalidArgument || e.Msg == "" {
			t.Fatalf("refused with %T %v, want an InvalidArgument message", err, err)
		}
		return
	}
	if tensors.NumNodes < 0 || len(tensors.Features) != tensors.NumNodes*fuzzInfo.FeatureDim || len(tensors.EdgeIndex)%2 != 0 {
		t.Fatalf("accepted inconsistent tensors: %d nodes, %d features, %d edge entries",
			tensors.NumNodes, len(tensors.Features), len(tensors.EdgeIndex))
	}
}

// predictFake runs accepted tensors through the fake model and the output
// selection, as the server would.
func predictFake(t *testing.T, tensors Tensors, requested []string) []outputTensor {
	t.Helper()
	names, err := selectOutputs(requested)
	if err != nil {
		checkDecoded(t, Tensors{}, err)
		return nil
	}
	r := &fakeRequest{b: newFakeBackend()}
	p, err := r.Predict(context.Background(), tensors)
	if err != nil {
		t.Fatal(err)
	}
	return buildOutputs(names, tensors.NumNodes, p, fuzzInfo.NumClasses)
}

// FuzzModelInferRequest feeds arbitrary bytes to the gRPC path: the
// generated decoder, then the tensor decoding and validation.
func FuzzModelInferRequest(f *testing.F) {
	for _, req := range []*pb.ModelInferRequest{typedRequest(), {
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}},
			{Name: "edge_index", Datatype: "INT32", Shape: []int64{2, 1}},
		},
		RawInputContents: [][]byte{make([]byte, 12), make([]byte, 8)},
	}} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(pb.ModelInferRequest)
		if proto.Unmarshal(data, req) != nil {
			return
		}
		inputs, err := decodeGRPCInputs(req)
		if err != nil {
			checkDecoded(t, Tensors{}, err)
			return
		}
		tensors, err := buildTensors(fuzzInfo, inputs)
		checkDecoded(t, tensors, err)
		if err != nil {
			return
		}
		var requested []string
		for _, o := range req.GetOutputs() {
			requested = append(requested, o.GetName())
		}
		for _, o := range predictFake(t, tensors, requested) {
			if n := len(rawBytes(o)); n != 4*len(o.fp32)+8*len(o.i64) {
				t.Fatalf("output %s: %d raw bytes", o.name, n)
			}
		}
	})
}

// FuzzRESTInferBody feeds arbitrary bodies (and Inference-Header-Content-
// Length values) to the REST path, and checks that an accepted request
// yields a response that is valid JSON.
func FuzzRESTInferBody(f *testing.F) {
	f.Add([]byte(jsonRequest), "")
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[0,3],"datatype":"FP32","data":[]},{"name":"edge_index","shape":[2,0],"datatype":"INT32","data":[[],[]]}],"parameters":{"binary_data_output":true}}`), "")
	head := `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}},{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,0]}],"outputs":[{"name":"scores","parameters":{"binary_data":true}}]}`
	f.Add(append([]byte(head), make([]byte, 12)...), "231")
	f.Fuzz(func(t *testing.T, body []byte, headerLength string) {
		req, inputs, err := decodeRESTRequest(body, headerLength)
		if err != nil {
			checkDecoded(t, Tensors{}, err)
			return
		}
		tensors, err := buildTensors(fuzzInfo, inputs)
		checkDecoded(t, tensors, err)
		if err != nil {
			return
		}
		var requested []string
		for _, o := range req.Outputs {
			requested = append(requested, o.Name)
		}
		outputs := predictFake(t, tensors, requested)
		if outputs == nil {
			return
		}
		res, _ := encodeRESTResponse(&fakeModel{name: "m", version: 1}, req, outputs)
		b, err := json.Marshal(res)
		if err != nil || !json.Valid(b) {
			t.Fatalf("response does not encode as JSON: %v", err)
		}
	})
}

// FuzzTensorData feeds arbitrary bytes to the JSON tensor data parsers:
// they never panic and never return more elements than asked for.
func FuzzTensorData(f *testing.F) {
	f.Add([]byte(`[[1, 2.5e-3], [-4, 5]]`), uint16(4))
	f.Add([]byte(`[0, 1, 2]`), uint16(2))
	f.Add([]byte(`[[], [1,], 2]`), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, want uint16) {
		shape := []int64{int64(want)}
		if want%2 == 0 {
			shape = []int64{2, int64(want / 2)}
		}
		fs, err := parseFloat32Data(data, shape, int(want))
		if err == nil && len(fs) > int(want) {
			t.Fatalf("parsed %d floats, want at most %d", len(fs), want)
		}
		is, err := parseIntData(data, shape, int(want), true)
		if err == nil && len(is) > int(want) {
			t.Fatalf("parsed %d ints, want at most %d", len(is), want)
		}
		for _, v := range is {
			if v < math.MinInt32 || v > math.MaxInt32 {
				t.Fatalf("INT32 parse accepted %d", v)
			}
		}
	})
}

// FuzzCountInferRequest feeds arbitrary bytes to the count that runs on a
// ModelInfer's wire bytes before they are decoded: it never panics, and
// when both it and proto.Unmarshal accept the bytes, its bound covers the
// typed elements decoded and its edge count covers edge_index's.
func FuzzCountInferRequest(f *testing.F) {
	for _, m := range []*pb.ModelInferRequest{
		typedRequestForFuzz(),
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "edge_index", Datatype: "INT32", Shape: []int64{2, 3},
			Contents: &pb.InferTensorContents{IntContents: []int32{0, 1, 2, 1, 2, 0}}}}},
		{RawInputContents: [][]byte{{1, 2, 3, 4}}, Parameters: map[string]*pb.InferParameter{"p": {}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x2a, 0x05, 0x2a, 0x03, 0x12, 0x01, 0x00}) // inputs { contents { int_contents: [0] } } with a short length
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := countInferRequest(b)
		if err != nil {
			var e *gcn.Error
			if !errors.As(err, &e) || e.Kind != gcn.KindInvalidArgument {
				t.Fatalf("count error %v is not INVALID_ARGUMENT", err)
			}
			return
		}
		m := new(pb.ModelInferRequest)
		if proto.Unmarshal(b, m) != nil {
			return
		}
		var typed int64
		for _, in := range m.GetInputs() {
			ct := in.GetContents()
			n := int64(len(ct.GetBoolContents()) + 4*len(ct.GetIntContents()) + 8*len(ct.GetInt64Contents()) +
				4*len(ct.GetUintContents()) + 8*len(ct.GetUint64Contents()) + 4*len(ct.GetFp32Contents()) + 8*len(ct.GetFp64Contents()))
			typed += n
			if in.GetName() == InputEdgeIndex {
				if e := int64(len(ct.GetIntContents())+len(ct.GetInt64Contents())) / 2; c.edges < e {
					t.Fatalf("counted %d edges, edge_index holds %d", c.edges, e)
				}
			}
		}
		if c.decoded < typed {
			t.Fatalf("bound %d below the %d bytes of typed elements decoded", c.decoded, typed)
		}
	})
}

func typedRequestForFuzz() *pb.ModelInferRequest {
	return &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{2, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4, 5, 6}}},
		{Name: "edge_index", Datatype: "INT64", Shape: []int64{2, 1}, Contents: &pb.InferTensorContents{Int64Contents: []int64{0, 1}}},
	}}
}
