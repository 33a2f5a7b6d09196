package graphwire

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// benchPayloads are the request shapes the benchmarks decode.
var benchPayloads = []struct {
	name                   string
	nodes, edges, features int
	bagOfWords             bool // binary features, like Cora's
	longIDs                bool // 24-byte ids with a common prefix, not "n123"
}{
	{name: "karate", nodes: 34, edges: 78, features: 34},
	{name: "medium", nodes: 2708, edges: 10556, features: 32},
	{name: "cora", nodes: 2708, edges: 5278, features: 1433, bagOfWords: true},
	{name: "large", nodes: 100_000, edges: 500_000, features: 16},
	{name: "large-long-ids", nodes: 100_000, edges: 500_000, features: 16, longIDs: true},
}

var (
	benchWireMu sync.Mutex
	benchWire   = map[string][]byte{}
)

// benchRequest returns payload i's wire bytes, built once per process: the
// large one takes a while to generate.
func benchRequest(b *testing.B, i int) []byte {
	b.Helper()
	benchWireMu.Lock()
	defer benchWireMu.Unlock()
	p := benchPayloads[i]
	if w, ok := benchWire[p.name]; ok {
		return w
	}
	var m *gcnpb.GraphData
	if p.bagOfWords {
		m = SyntheticBagOfWordsGraph(p.nodes, p.edges, p.features, 0.0127, 1)
	} else {
		m = SyntheticGraph(p.nodes, p.edges, p.features, 1)
	}
	if p.longIDs {
		long := make(map[string]string, len(m.Nodes))
		for _, n := range m.Nodes {
			long[n.Id] = fmt.Sprintf("urn:gcn:node:%011s", n.Id)
			n.Id = long[n.Id]
		}
		for _, e := range m.Edges {
			e.SourceId, e.TargetId = long[e.SourceId], long[e.TargetId]
		}
	}
	w, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	benchWire[p.name] = w
	return w
}

func BenchmarkDecode(b *testing.B) {
	for i, p := range benchPayloads {
		b.Run(p.name, func(b *testing.B) {
			w := benchRequest(b, i)
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			defer reportCPUPerEdge(b, p.edges)()
			for b.Loop() {
				if _, err := Decode(w, p.features, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodePooled is BenchmarkDecode with the tensors taken from a
// bufpool.Pool and given back after each decode, as the gRPC server does:
// what is left per op is the ids, the id index (graphcheck) and a few small
// objects.
func BenchmarkDecodePooled(b *testing.B) {
	pool := bufpool.New(bufpool.Options{MinBytes: bufpool.FrameBytes}) // as the server's
	defer pool.Close()
	for i, p := range benchPayloads {
		b.Run(p.name, func(b *testing.B) {
			w := benchRequest(b, i)
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			defer reportCPUPerEdge(b, p.edges)()
			for b.Loop() {
				g, err := DecodePooled(w, Fixed(p.features), Limits{}, func() *bufpool.Pool { return pool })
				if err != nil {
					b.Fatal(err)
				}
				Recycle(g, pool)
			}
		})
	}
}

// BenchmarkProtoUnmarshalFromMessage is the generated path Decode replaces:
// proto.Unmarshal into gcnpb.GraphData, then FromMessage.
func BenchmarkProtoUnmarshalFromMessage(b *testing.B) {
	for i, p := range benchPayloads {
		b.Run(p.name, func(b *testing.B) {
			w := benchRequest(b, i)
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			for b.Loop() {
				var m gcnpb.GraphData
				if err := proto.Unmarshal(w, &m); err != nil {
					b.Fatal(err)
				}
				if _, err := FromMessage(&m, p.features, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFromMessage is FromMessage alone on an unmarshalled request:
// the validation and id mapping of the Go-values path (gcn.PredictGraph
// uses the same FromSource).
func BenchmarkFromMessage(b *testing.B) {
	for i, p := range benchPayloads {
		b.Run(p.name, func(b *testing.B) {
			var m gcnpb.GraphData
			if err := proto.Unmarshal(benchRequest(b, i), &m); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := FromMessage(&m, p.features, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchResult returns payload i's ids, scores and 7-class predictions.
func benchResult(b *testing.B, i int) ([]string, []float32, *Predictions) {
	b.Helper()
	g, err := Decode(benchRequest(b, i), benchPayloads[i].features, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	const classes = 7
	n := g.NumNodes()
	pred := &Predictions{
		NumClasses:    classes,
		Probabilities: make([]float32, n*classes),
		ClassIndex:    make([]int32, n),
		ClassNames:    []string{"Case_Based", "Genetic_Algorithms", "Neural_Networks", "Probabilistic_Methods", "Reinforcement_Learning", "Rule_Learning", "Theory"},
	}
	scores := make([]float32, n)
	for i := range n {
		scores[i] = float32(i%1000) / 1000
		pred.ClassIndex[i] = int32(i % classes)
		for c := range classes {
			pred.Probabilities[i*classes+c] = float32(c+1) / 28
		}
	}
	return g.IDs, scores, pred
}

// benchEachResult runs encode for every payload's response, with and
// without predictions.
func benchEachResult(b *testing.B, encode func(b *testing.B, ids []string, scores []float32, pred *Predictions)) {
	for i, p := range benchPayloads {
		for _, withPred := range []bool{false, true} {
			name := p.name
			if withPred {
				name += "+predictions"
			}
			b.Run(name, func(b *testing.B) {
				ids, scores, pred := benchResult(b, i)
				if !withPred {
					pred = nil
				}
				b.ReportAllocs()
				encode(b, ids, scores, pred)
			})
		}
	}
}

// BenchmarkAppendResult encodes a response the way the server does: one
// buffer of ResultSize, then AppendResult.
func BenchmarkAppendResult(b *testing.B) {
	benchEachResult(b, func(b *testing.B, ids []string, scores []float32, pred *Predictions) {
		for b.Loop() {
			out := make([]byte, 0, ResultSize(ids, pred))
			AppendResult(out, ids, scores, pred)
		}
	})
}

// BenchmarkProtoMarshalResult is the generated path AppendResult replaces:
// build a gcnpb.GCNResult, then proto.Marshal.
func BenchmarkProtoMarshalResult(b *testing.B) {
	benchEachResult(b, func(b *testing.B, ids []string, scores []float32, pred *Predictions) {
		for b.Loop() {
			if _, err := proto.Marshal(resultMessage(ids, scores, pred)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU starts measuring this process's CPU time; the function it
// returns reports it per iteration as cpu-ms/op. On a shared machine it is
// steadier than ns/op, which counts the time spent waiting for a core.
func reportCPU(b *testing.B) func() {
	start := testenv.CPUTime()
	return func() { b.ReportMetric(float64(testenv.CPUTime()-start)/1e6/float64(b.N), "cpu-ms/op") }
}

// reportCPUPerEdge is reportCPU that also reports the CPU time per edge of
// the request (cpu-ns/edge; nodes' cost included): the figure that stays
// comparable across graph sizes.
func reportCPUPerEdge(b *testing.B, edges int) func() {
	start := testenv.CPUTime()
	return func() {
		cpu := float64(testenv.CPUTime() - start)
		b.ReportMetric(cpu/1e6/float64(b.N), "cpu-ms/op")
		if edges > 0 {
			b.ReportMetric(cpu/float64(b.N)/float64(edges), "cpu-ns/edge")
		}
	}
}
