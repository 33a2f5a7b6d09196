package httpjson

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// FuzzDecodeJSON feeds arbitrary bodies through what POST /v1/process-graph
// does before and after the model: protojson, graphwire.FromMessage with
// Karate's 34 features, the result and its encoding. Bad input must end in a
// gcn.Error the client can act on (InvalidArgument or TooLarge), never a
// panic or an internal error; good input must give consistent tensors and a
// response that decodes back to what was built.
func FuzzDecodeJSON(f *testing.F) {
	root := testenv.RepoRoot(f)
	for _, p := range []string{"examples/karate.json", "model/testdata/karate/two_nodes.json"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// More seeds are in testdata/fuzz/FuzzDecodeJSON.
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"nodes":[{"id":"a","features":[0]}]}`))

	const featureDim = 34
	lim := graphwire.Limits{MaxNodes: 1000, MaxEdges: 10000}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := unmarshalGraph(body)
		if err != nil {
			wantKind(t, err, gcn.KindInvalidArgument)
			return
		}
		g, err := graphwire.FromMessage(m, featureDim, lim)
		if err != nil {
			wantKind(t, err, gcn.KindInvalidArgument, gcn.KindTooLarge)
			return
		}
		n, e := g.NumNodes(), g.NumEdges()
		if n != len(m.GetNodes()) || e != len(m.GetEdges()) || len(g.Features) != n*featureDim {
			t.Fatalf("graph of %d nodes, %d edges, %d features from a message of %d nodes, %d edges",
				n, e, len(g.Features), len(m.GetNodes()), len(m.GetEdges()))
		}
		for _, x := range g.EdgeIndex {
			if x < 0 || x >= int64(n) {
				t.Fatalf("edge index %d out of range [0, %d)", x, n)
			}
		}
		for _, v := range g.Features {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("non-finite feature %v passed validation", v)
			}
		}
		// A stand-in prediction: the encoding must carry it back intact.
		const classes = 2
		p := gcn.Prediction{NumClasses: classes, Probabilities: make([]float32, n*classes),
			ClassIndex: make([]int32, n), Scores: make([]float32, n)}
		for i := range n {
			p.Scores[i] = float32(i) / float32(n+1)
			p.ClassIndex[i] = int32(i % classes)
			p.Probabilities[i*classes+i%classes] = 1
		}
		res := result(g.IDs, p, g.IncludePredictions, []string{"zero"}, "karate", "1")
		out, err := marshalResult(res)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back := res.ProtoReflect().New().Interface()
		if err := protojson.Unmarshal(out, back); err != nil {
			t.Fatalf("the response does not decode: %v\n%s", err, out)
		}
		if !proto.Equal(res, back) {
			t.Fatalf("the response decodes to something else:\n%s", out)
		}
	})
}

func wantKind(t *testing.T, err error, kinds ...gcn.ErrorKind) {
	t.Helper()
	var e *gcn.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a gcn.Error", err, err)
	}
	for _, k := range kinds {
		if e.Kind == k {
			if e.Msg == "" {
				t.Fatalf("%v error with no message", k)
			}
			return
		}
	}
	t.Fatalf("error %q has kind %v, want one of %v", err, e.Kind, kinds)
}
