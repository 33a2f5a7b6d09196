package gcn_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// payload is one benchmark shape, the same four make bench uses.
type payload struct {
	name                   string
	nodes, edges, features int
}

var payloads = []payload{
	{"karate", 34, 78, 34},
	{"medium", 2708, 10556, 32},
	{"cora", 2708, 5278, 1433},
	{"large", 100_000, 500_000, 16},
}

// benchModel opens a random-init model with f features (7 classes, hidden
// 16), exported by scripts/export_onnx.py into .cache/models (reused; the
// name carries the script version that wrote it, 2: with "layers").
func benchModel(b *testing.B, f int, opts ...gcn.Option) *gcn.Model {
	b.Helper()
	root := testenv.RepoRoot(b)
	path := filepath.Join(root, ".cache", "models", "random-f"+strconv.Itoa(f)+"-v2.onnx")
	if _, err := os.Stat(path); err != nil {
		python := testenv.Python(b)
		cmd := exec.Command(python, filepath.Join(root, "scripts", "export_onnx.py"), "--random-init",
			"--features", strconv.Itoa(f), "--classes", "7", "--out", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("export: %v\n%s", err, out)
		}
	}
	m, err := gcn.Open(path, append([]gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(b))}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// execModes are the ways a model runs: ONNX Runtime (the portable path;
// the bundled models cap it at one intra-op thread), native on one
// goroutine, native with the goroutines chosen by graph size.
var execModes = []struct {
	name string
	opts []gcn.Option
}{
	{"ort", []gcn.Option{gcn.WithNativeExecution(false)}},
	{"native/workers=1", []gcn.Option{gcn.WithNativeWorkers(1)}},
	{"native", nil},
}

// BenchmarkPredict is the model run alone (checks, the run, post-processing)
// on each payload, in each execution mode: the whole large request in
// process is BenchmarkPredict/large/native.
func BenchmarkPredict(b *testing.B) {
	for _, p := range payloads {
		g, err := graphwire.FromMessage(graphwire.SyntheticGraph(p.nodes, p.edges, p.features, 1), p.features, graphwire.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		in := gcn.Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex}
		for _, mode := range execModes {
			b.Run(p.name+"/"+mode.name, func(b *testing.B) {
				m := benchModel(b, p.features, mode.opts...)
				b.ReportAllocs()
				defer gcn.ReportCPU(b)()
				for b.Loop() {
					if _, err := m.Predict(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPredictGraph is PredictGraph on Go values: validation and id
// mapping (graphwire.FromSource), then the checks and the run Predict does,
// on each payload, native. Compare with BenchmarkPredict/*/native for the
// cost of the ids.
func BenchmarkPredictGraph(b *testing.B) {
	for _, p := range payloads {
		b.Run(p.name, func(b *testing.B) {
			g := goGraph(graphwire.SyntheticGraph(p.nodes, p.edges, p.features, 1))
			m := benchModel(b, p.features)
			b.ReportAllocs()
			defer gcn.ReportCPU(b)()
			for b.Loop() {
				if _, err := m.PredictGraph(context.Background(), g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// goGraph is m as the Go values PredictGraph takes (features shared).
func goGraph(m *gcnpb.GraphData) gcn.Graph {
	g := gcn.Graph{Nodes: make([]gcn.Node, len(m.Nodes)), Edges: make([]gcn.Edge, len(m.Edges))}
	for i, n := range m.Nodes {
		g.Nodes[i] = gcn.Node{ID: n.Id, Features: n.Features}
	}
	for j, e := range m.Edges {
		g.Edges[j] = gcn.Edge{Source: e.SourceId, Target: e.TargetId}
	}
	return g
}
