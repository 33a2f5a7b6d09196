// Package inprocess compares the two ways a Go program can get scores: the
// in-process library (package gcn) and a gcnserve on loopback called with
// package client. One run measures both on the same graphs:
//
//	go test -run NONE -bench . -benchtime 3s ./bench/inprocess
//
// Each sub-benchmark reports, besides ns/op, the CPU time per request
// (cpu-ms/op: the whole process for the library; the client process plus the
// server process for gRPC, split in client-cpu-ms/op and server-cpu-ms/op)
// and the median latency (p50-ms). Requests are sequential (one in flight),
// so there is no batching and latency is the plain cost of one request.
package inprocess

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/client"
	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

type payload struct {
	name  string
	model func(b *testing.B) string // the model file, relative to the repo root
	graph func() *gcnpb.GraphData
}

var payloads = []payload{
	{"karate", bundled("karate.onnx"), func() *gcnpb.GraphData {
		g, err := client.ReadJSONFile(filepath.Join(repoRoot, "examples", "karate.json"))
		if err != nil {
			panic(err)
		}
		return g
	}},
	// Cora's shape: 2,708 papers, 5,278 links, 1,433 binary word features
	// (18 words per paper on average), on the bundled Cora model.
	{"cora", bundled("cora.onnx"), func() *gcnpb.GraphData {
		return graphwire.SyntheticBagOfWordsGraph(2708, 5278, 1433, 0.0127, 1)
	}},
	// bench/run.sh's large payload and model.
	{"large", randomModel(16), func() *gcnpb.GraphData {
		return graphwire.SyntheticGraph(100_000, 500_000, 16, 1)
	}},
}

var repoRoot string

func bundled(name string) func(*testing.B) string {
	return func(*testing.B) string { return filepath.Join("model", name) }
}

// randomModel is bench/run.sh's random-init model with f features, made by
// scripts/export_onnx.py into .cache/bench when missing.
func randomModel(f int) func(*testing.B) string {
	return func(b *testing.B) string {
		rel := filepath.Join(".cache", "bench", "gcn-random-f"+strconv.Itoa(f)+"-c7.onnx")
		path := filepath.Join(repoRoot, rel)
		if _, err := os.Stat(path); err == nil {
			return rel
		}
		python := testenv.Python(b)
		os.MkdirAll(filepath.Dir(path), 0o755)
		cmd := exec.Command(python, "scripts/export_onnx.py", "--random-init", "--features", strconv.Itoa(f),
			"--classes", "7", "--hidden", "16", "--out", path)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("export_onnx.py: %v\n%s", err, out)
		}
		return rel
	}
}

func BenchmarkInProcessVsRPC(b *testing.B) {
	repoRoot = testenv.RepoRoot(b)
	lib := testenv.ORTLibrary(b)
	for _, p := range payloads {
		model := p.model(b)
		msg := p.graph()
		g, tensors := convert(msg)

		m, err := gcn.Open(filepath.Join(repoRoot, model), gcn.WithLibraryPath(lib))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		b.Run(p.name+"/library-graph", func(b *testing.B) {
			measure(b, nil, func() error { _, err := m.PredictGraph(context.Background(), g); return err })
		})
		b.Run(p.name+"/library-tensors", func(b *testing.B) {
			measure(b, nil, func() error { _, err := m.Predict(context.Background(), tensors); return err })
		})

		srv := servertest.Start(b, "--model", model)
		c, err := client.Dial(srv.Addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		b.Run(p.name+"/grpc-loopback", func(b *testing.B) {
			measure(b, srv, func() error { _, err := c.ProcessGraph(context.Background(), msg); return err })
		})
	}
}

// measure runs call b.N times after one warm-up call and reports CPU per
// request and the median latency.
func measure(b *testing.B, srv *servertest.Server, call func() error) {
	if err := call(); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	var serverStart time.Duration
	if srv != nil {
		serverStart = srv.CPUTime(b)
	}
	selfStart := testenv.CPUTime()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	self := testenv.CPUTime() - selfStart
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "p50-ms")
	if srv == nil {
		b.ReportMetric(ms(self), "cpu-ms/op")
		return
	}
	server := srv.CPUTime(b) - serverStart
	b.ReportMetric(ms(self), "client-cpu-ms/op")
	b.ReportMetric(ms(server), "server-cpu-ms/op")
	b.ReportMetric(ms(self+server), "cpu-ms/op")
}

// convert gives the message as the library's two input forms.
func convert(m *gcnpb.GraphData) (gcn.Graph, gcn.Tensors) {
	var g gcn.Graph
	index := make(map[string]int64, len(m.Nodes))
	t := gcn.Tensors{NumNodes: len(m.Nodes), EdgeIndex: make([]int64, 2*len(m.Edges))}
	for i, n := range m.Nodes {
		g.Nodes = append(g.Nodes, gcn.Node{ID: n.Id, Features: n.Features})
		index[n.Id] = int64(i)
		t.Features = append(t.Features, n.Features...)
	}
	for j, e := range m.Edges {
		g.Edges = append(g.Edges, gcn.Edge{Source: e.SourceId, Target: e.TargetId})
		t.EdgeIndex[j], t.EdgeIndex[len(m.Edges)+j] = index[e.SourceId], index[e.TargetId]
	}
	return g, t
}
