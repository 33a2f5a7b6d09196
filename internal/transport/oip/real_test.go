package oip_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/gcnserve/gcnserve/gcn"
	pb "github.com/gcnserve/gcnserve/gen/inferencepb"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/oip"
	"github.com/gcnserve/gcnserve/internal/transport/oip/oiptest"
)

// realServer serves the real karate model through the transport, over
// gRPC (bufconn) and REST (httptest).
type realServer struct {
	model  *gcn.Model
	client pb.GRPCInferenceServiceClient
	url    string
}

func startReal(t *testing.T) *realServer {
	t.Helper()
	// The same file, opened twice: once behind the serving layer, once
	// directly, for the reference predictions.
	m := infertest.OpenKarate(t)
	path := filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx")
	s := oip.New(oiptest.Backend(t, path, oip.DefaultMaxRequestBytes), oip.Options{})
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	mux := http.NewServeMux()
	s.Routes(mux)
	h := httptest.NewServer(mux)
	t.Cleanup(h.Close)
	return &realServer{model: m, client: pb.NewGRPCInferenceServiceClient(conn), url: h.URL}
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func le32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func fromLE32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// inferAllWays runs g through gRPC typed, gRPC raw (INT32 edges) and REST
// JSON, and returns each way's scores and probabilities.
func (s *realServer) inferAllWays(t *testing.T, g gcn.Tensors) map[string][2][]float32 {
	t.Helper()
	f := int64(s.model.Info().FeatureDim)
	n, e := int64(g.NumNodes), int64(g.NumEdges())
	out := map[string][2][]float32{}

	typed, err := s.client.ModelInfer(timeout(t), &pb.ModelInferRequest{
		ModelName: "gcn-karate",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{n, f}, Contents: &pb.InferTensorContents{Fp32Contents: g.Features}},
			{Name: "edge_index", Datatype: "INT64", Shape: []int64{2, e}, Contents: &pb.InferTensorContents{Int64Contents: g.EdgeIndex}},
		},
	})
	if err != nil {
		t.Fatalf("gRPC typed: %v", err)
	}
	out["grpc typed"] = [2][]float32{typed.GetOutputs()[0].GetContents().GetFp32Contents(), typed.GetOutputs()[1].GetContents().GetFp32Contents()}

	edges32 := make([]byte, 4*len(g.EdgeIndex))
	for i, v := range g.EdgeIndex {
		binary.LittleEndian.PutUint32(edges32[4*i:], uint32(v))
	}
	raw, err := s.client.ModelInfer(timeout(t), &pb.ModelInferRequest{
		ModelName: "gcn-karate",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{n, f}},
			{Name: "edge_index", Datatype: "INT32", Shape: []int64{2, e}},
		},
		Outputs:          []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "scores"}, {Name: "probabilities"}},
		RawInputContents: [][]byte{le32(g.Features), edges32},
	})
	if err != nil {
		t.Fatalf("gRPC raw: %v", err)
	}
	out["grpc raw"] = [2][]float32{fromLE32(raw.GetRawOutputContents()[0]), fromLE32(raw.GetRawOutputContents()[1])}

	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{
		{"name": "x", "datatype": "FP32", "shape": []int64{n, f}, "data": g.Features},
		{"name": "edge_index", "datatype": "INT64", "shape": []int64{2, e}, "data": g.EdgeIndex},
	}})
	res, err := http.Post(s.url+"/v2/models/gcn-karate/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var decoded struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if b, _ := io.ReadAll(res.Body); res.StatusCode != 200 || json.Unmarshal(b, &decoded) != nil || len(decoded.Outputs) != 3 {
		t.Fatalf("REST: %d %s", res.StatusCode, b)
	}
	out["rest json"] = [2][]float32{decoded.Outputs[0].Data, decoded.Outputs[1].Data}
	return out
}

// TestRealKarateGolden checks every transport path against both the
// model's own Predict (the ProcessGraph path) and PyTorch's golden outputs.
func TestRealKarateGolden(t *testing.T) {
	s := startReal(t)
	const tol = 1e-5
	for _, fx := range golden.Load(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate")) {
		g := fx.Graph(t, s.model.Info().FeatureDim)
		direct, err := s.model.Predict(timeout(t), g)
		if err != nil {
			t.Fatal(err)
		}
		for way, got := range s.inferAllWays(t, g) {
			if d := golden.MaxAbsDiff(got[0], direct.Scores); d > tol {
				t.Errorf("%s %s: scores differ from Predict's by %g", fx.Name, way, d)
			}
			if d := golden.MaxAbsDiff(got[0], fx.Scores); d > tol {
				t.Errorf("%s %s: scores differ from PyTorch's by %g", fx.Name, way, d)
			}
			if d := golden.MaxAbsDiff(got[1], fx.FlatProbabilities()); d > tol {
				t.Errorf("%s %s: probabilities differ from PyTorch's by %g", fx.Name, way, d)
			}
		}
	}
}

// TestRealInvalidValues checks the model's value checks through both
// transports: the status and the message naming the tensor and entry.
func TestRealInvalidValues(t *testing.T) {
	s := startReal(t)
	g := infertest.RandomGraph(1, 3, 2, 34)
	cases := []struct {
		name   string
		mutate func(g *gcn.Tensors)
		substr string
	}{
		{"NaN", func(g *gcn.Tensors) { g.Features[34+5] = float32(math.NaN()) }, "x[1][5] is NaN"},
		{"Inf", func(g *gcn.Tensors) { g.Features[0] = float32(math.Inf(-1)) }, "x[0][0] is -Inf"},
		{"index out of range", func(g *gcn.Tensors) { g.EdgeIndex[3] = 3 }, "edge_index[1][1] = 3 is not a node index in [0, 3)"},
		{"negative index", func(g *gcn.Tensors) { g.EdgeIndex[0] = -1 }, "edge_index[0][0] = -1 is not a node index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := gcn.Tensors{NumNodes: g.NumNodes, Features: append([]float32(nil), g.Features...), EdgeIndex: append([]int64(nil), g.EdgeIndex...)}
			c.mutate(&bad)
			req := &pb.ModelInferRequest{
				Inputs: []*pb.ModelInferRequest_InferInputTensor{
					{Name: "x", Datatype: "FP32", Shape: []int64{3, 34}, Contents: &pb.InferTensorContents{Fp32Contents: bad.Features}},
					{Name: "edge_index", Datatype: "INT64", Shape: []int64{2, 2}, Contents: &pb.InferTensorContents{Int64Contents: bad.EdgeIndex}},
				},
			}
			_, err := s.client.ModelInfer(timeout(t), req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.substr) {
				t.Errorf("gRPC: %v, want InvalidArgument containing %q", err, c.substr)
			}
			// JSON cannot carry NaN or Inf, so REST sends those through
			// the binary tensor data extension, as tritonclient does.
			head := fmt.Sprintf(`{"inputs":[{"name":"x","shape":[3,34],"datatype":"FP32","parameters":{"binary_data_size":%d}},`+
				`{"name":"edge_index","shape":[2,2],"datatype":"INT64","data":[%d,%d,%d,%d]}]}`,
				4*len(bad.Features), bad.EdgeIndex[0], bad.EdgeIndex[1], bad.EdgeIndex[2], bad.EdgeIndex[3])
			hreq, _ := http.NewRequest("POST", s.url+"/v2/models/gcn-karate/infer", bytes.NewReader(append([]byte(head), le32(bad.Features)...)))
			hreq.Header.Set("Inference-Header-Content-Length", fmt.Sprint(len(head)))
			res, err := http.DefaultClient.Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body struct {
				Error string `json:"error"`
			}
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 400 || json.Unmarshal(b, &body) != nil || !strings.Contains(body.Error, c.substr) {
				t.Errorf("REST: %d %s, want 400 containing %q", res.StatusCode, b, c.substr)
			}
		})
	}
}

// TestRealConcurrent runs many requests at once over both transports (the
// serving layer batches them) and checks each answer against the model's
// own Predict on the same graph.
func TestRealConcurrent(t *testing.T) {
	s := startReal(t)
	const workers, each = 8, 4
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				g := infertest.RandomGraph(uint64(100*w+i), 5+w*3+i, 4+2*w, 34)
				want, err := s.model.Predict(context.Background(), g)
				if err != nil {
					errs <- err
					continue
				}
				var got []float32
				if (w+i)%2 == 0 {
					got, err = s.grpcScores(g)
				} else {
					got, err = s.restScores(g)
				}
				if err != nil {
					errs <- err
				} else if d := golden.MaxAbsDiff(got, want.Scores); d > 1e-5 {
					errs <- fmt.Errorf("worker %d request %d: scores differ from Predict's by %g", w, i, d)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func (s *realServer) grpcScores(g gcn.Tensors) ([]float32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.client.ModelInfer(ctx, &pb.ModelInferRequest{
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{int64(g.NumNodes), 34}, Contents: &pb.InferTensorContents{Fp32Contents: g.Features}},
			{Name: "edge_index", Datatype: "INT64", Shape: []int64{2, int64(g.NumEdges())}, Contents: &pb.InferTensorContents{Int64Contents: g.EdgeIndex}},
		},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "scores"}},
	})
	if err != nil {
		return nil, err
	}
	return res.GetOutputs()[0].GetContents().GetFp32Contents(), nil
}

func (s *realServer) restScores(g gcn.Tensors) ([]float32, error) {
	body, _ := json.Marshal(map[string]any{
		"inputs": []map[string]any{
			{"name": "x", "datatype": "FP32", "shape": []int{g.NumNodes, 34}, "data": g.Features},
			{"name": "edge_index", "datatype": "INT64", "shape": []int{2, g.NumEdges()}, "data": g.EdgeIndex},
		},
		"outputs": []map[string]any{{"name": "scores"}},
	})
	res, err := http.Post(s.url+"/v2/models/gcn-karate/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || len(out.Outputs) != 1 {
		return nil, fmt.Errorf("REST: status %d, %v", res.StatusCode, err)
	}
	return out.Outputs[0].Data, nil
}
