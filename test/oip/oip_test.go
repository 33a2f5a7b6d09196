// Package oip tests the Open Inference Protocol v2 with clients built the
// way users build them: a Python gRPC client whose stubs protoc generates
// from the specification's own proto (oip_grpc_client.py), and a plain
// JSON-over-HTTP client (oip_rest_client.py, urllib). Both run liveness,
// readiness, metadata and inference (typed contents and raw_input_contents)
// on Karate and on a Cora-sized graph for the Cora model, and must get the
// scores that ProcessGraph, called on the real binary, gives for the same
// graph (max abs diff <= 1e-5).
package oip

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/oip"
	"github.com/gcnserve/gcnserve/internal/transport/oip/oiptest"
)

// oipInBinary says whether the gcnserve binary serves the protocol itself (gRPC on
// --addr, REST on --http-addr). Until the server registers the oip
// transport, the clients talk to an in-process server built from the oip
// package and the real model, and only ProcessGraph runs on the binary.
const oipInBinary = true

// maxRequestBytes matches the server's --max-request-bytes default.
const maxRequestBytes = 64 << 20

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// startBinary runs gcnserve (as 'make build' makes it) on model and waits up
// to 30s for health SERVING.
func startBinary(t *testing.T, model string) *servertest.Server {
	t.Helper()
	return servertest.Run(t, servertest.Options{HTTP: oipInBinary, Args: []string{"--model", model}, Timeout: 30 * time.Second})
}

// startInProcess serves the protocol from the oip package, over the real
// serving layer and model, on loopback ports: gRPC and REST.
func startInProcess(t *testing.T, model string) (grpcAddr, httpAddr string) {
	t.Helper()
	s := oip.New(oiptest.Backend(t, model, maxRequestBytes), oip.Options{MaxRequestBytes: maxRequestBytes})
	g := grpc.NewServer(grpc.MaxRecvMsgSize(maxRequestBytes))
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	mux := http.NewServeMux()
	s.Routes(mux)
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.Serve(hlis) }()
	t.Cleanup(func() { _ = h.Close() })
	return lis.Addr().String(), hlis.Addr().String()
}

// karateGraph is examples/karate.json, the tutorial's request.
func karateGraph(t *testing.T) *gcnpb.GraphData {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	g := new(gcnpb.GraphData)
	if err := protojson.Unmarshal(data, g); err != nil {
		t.Fatal(err)
	}
	return g
}

// coraSizedGraph is a graph of Cora's size and kind (2,708 nodes, 1,433
// binary bag-of-words features with about 18 words per node, 5,278 links),
// drawn at random with a fixed seed.
func coraSizedGraph() *gcnpb.GraphData {
	const nodes, features, words, links = 2708, 1433, 18, 5278
	r := rand.New(rand.NewPCG(2708, 1433))
	g := &gcnpb.GraphData{}
	for i := range nodes {
		f := make([]float32, features)
		for range words {
			f[r.IntN(features)] = 1
		}
		g.Nodes = append(g.Nodes, &gcnpb.Node{Id: fmt.Sprintf("paper-%d", i), Features: f})
	}
	for range links {
		g.Edges = append(g.Edges, &gcnpb.Edge{
			SourceId: g.Nodes[r.IntN(nodes)].GetId(), TargetId: g.Nodes[r.IntN(nodes)].GetId()})
	}
	return g
}

// clientCase is what the Python clients read: the graph as the protocol's
// tensors and ProcessGraph's scores in node order.
type clientCase struct {
	Model      string    `json:"model"`
	NumNodes   int       `json:"num_nodes"`
	FeatureDim int       `json:"feature_dim"`
	NumClasses int       `json:"num_classes"`
	X          []float32 `json:"x"`
	EdgeIndex  []int64   `json:"edge_index"`
	Scores     []float32 `json:"scores"`
}

// referenceCase calls ProcessGraph and GetModelInfo on the binary and turns
// the graph into tensors.
func referenceCase(t *testing.T, addr string, g *gcnpb.GraphData) clientCase {
	t.Helper()
	client := gcnpb.NewGCNServiceClient(servertest.Dial(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.ProcessGraph(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	c := clientCase{Model: info.GetName(), NumNodes: len(g.GetNodes()),
		FeatureDim: int(info.GetFeatureDim()), NumClasses: int(info.GetNumClasses())}
	index := make(map[string]int64, len(g.GetNodes()))
	for i, n := range g.GetNodes() {
		index[n.GetId()] = int64(i)
		c.X = append(c.X, n.GetFeatures()...)
		score, ok := res.GetNodeScores()[n.GetId()]
		if !ok {
			t.Fatalf("ProcessGraph gave no score for node %q", n.GetId())
		}
		c.Scores = append(c.Scores, score)
	}
	sources := make([]int64, 0, len(g.GetEdges()))
	targets := make([]int64, 0, len(g.GetEdges()))
	for _, e := range g.GetEdges() {
		sources = append(sources, index[e.GetSourceId()])
		targets = append(targets, index[e.GetTargetId()])
	}
	c.EdgeIndex = append(sources, targets...)
	return c
}

// pythonClients returns Debian's python3 with grpcio and numpy, after
// checking that protoc and the gRPC Python plugin are there
// (scripts/install_deps.sh installs all of them).
func pythonClients(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import grpc, numpy, google.protobuf").Run(); err != nil {
		testenv.Missing(t, python+" with grpcio, numpy and protobuf (python3-grpcio, python3-numpy, python3-protobuf)")
	}
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (protobuf-compiler, protobuf-compiler-grpc)")
		}
	}
	return python
}

// runClient runs one Python client and fails the test with its output
// when it reports a failed check.
func runClient(t *testing.T, python string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = filepath.Join(testenv.RepoRoot(t), "test", "oip")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(args[0]), err, out)
	}
	t.Logf("%s", out)
}

func TestOIPClients(t *testing.T) {
	python := pythonClients(t)
	root := testenv.RepoRoot(t)
	for _, c := range []struct {
		name, model string
		graph       func(*testing.T) *gcnpb.GraphData
	}{
		{"karate", "model/karate.onnx", karateGraph},
		{"cora", "model/cora.onnx", func(*testing.T) *gcnpb.GraphData { return coraSizedGraph() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := startBinary(t, c.model)
			ref := referenceCase(t, bin.Addr, c.graph(t))
			grpcAddr, httpAddr := bin.Addr, bin.HTTPAddr
			if !oipInBinary {
				grpcAddr, httpAddr = startInProcess(t, filepath.Join(root, c.model))
			}
			data, err := json.Marshal(ref)
			if err != nil {
				t.Fatal(err)
			}
			casePath := filepath.Join(t.TempDir(), "case.json")
			if err := os.WriteFile(casePath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			runClient(t, python, "oip_grpc_client.py", "--addr", grpcAddr, "--case", casePath)
			runClient(t, python, "oip_rest_client.py", "--url", "http://"+httpAddr, "--case", casePath)
			if c.name == "karate" {
				checkExample(t, httpAddr, ref)
			}
		})
	}
}

// checkExample posts examples/karate-oip.json (README, docs/OIP.md) and
// checks that its scores are ProcessGraph's for examples/karate.json.
func checkExample(t *testing.T, httpAddr string, ref clientCase) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "karate-oip.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post("http://"+httpAddr+"/v2/models/"+ref.Model+"/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("examples/karate-oip.json: %d %v", res.StatusCode, err)
	}
	if len(got.Outputs) == 0 || got.Outputs[0].Name != "scores" || len(got.Outputs[0].Data) != len(ref.Scores) {
		t.Fatalf("examples/karate-oip.json: outputs %+v", got.Outputs)
	}
	for i, s := range got.Outputs[0].Data {
		if d := math.Abs(float64(s - ref.Scores[i])); d > 1e-5 {
			t.Errorf("examples/karate-oip.json: node %d score %v, ProcessGraph's %v", i, s, ref.Scores[i])
		}
	}
}
