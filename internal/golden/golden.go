// Package golden loads the golden fixtures scripts/export_onnx.py writes:
// requests and the outputs PyTorch computed for them, the reference every
// test of "does serving compute what training computed" compares against.
package golden

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// Fixture is one request and PyTorch's answer, per node in request order.
type Fixture struct {
	Name          string
	Request       *gcnpb.GraphData
	Probabilities [][]float32
	Scores        []float32
	ClassIndex    []int
}

type fixtureFile struct {
	Name          string          `json:"name"`
	Request       json.RawMessage `json:"request"`
	Probabilities [][]float32     `json:"probabilities"`
	Scores        []float32       `json:"scores"`
	ClassIndex    []int           `json:"class_index"`
}

// Load reads every *.json fixture in dir, sorted by name. It fails the test
// when dir holds none: a golden test that compares nothing proves nothing.
func Load(t testing.TB, dir string) []Fixture {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no golden fixtures in %s", dir)
	}
	sort.Strings(paths)
	fixtures := make([]Fixture, 0, len(paths))
	for _, p := range paths {
		fixtures = append(fixtures, Read(t, p))
	}
	return fixtures
}

// Read reads the one fixture at path, such as
// model/testdata/karate/karate.json.
func Read(t testing.TB, path string) Fixture {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f fixtureFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	req := &gcnpb.GraphData{}
	if err := protojson.Unmarshal(f.Request, req); err != nil {
		t.Fatalf("%s: request: %v", path, err)
	}
	n := len(req.GetNodes())
	if len(f.Probabilities) != n || len(f.Scores) != n || len(f.ClassIndex) != n {
		t.Fatalf("%s: %d nodes but %d probability rows, %d scores, %d classes",
			path, n, len(f.Probabilities), len(f.Scores), len(f.ClassIndex))
	}
	return Fixture{Name: f.Name, Request: req, Probabilities: f.Probabilities, Scores: f.Scores, ClassIndex: f.ClassIndex}
}

// Graph is the fixture's request as a model input.
func (f Fixture) Graph(t testing.TB, featureDim int) gcn.Tensors {
	t.Helper()
	g, err := graphwire.FromMessage(f.Request, featureDim, graphwire.Limits{})
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	return gcn.Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex}
}

// FlatProbabilities is Probabilities row-major, as a model returns them.
func (f Fixture) FlatProbabilities() []float32 {
	var flat []float32
	for _, row := range f.Probabilities {
		flat = append(flat, row...)
	}
	return flat
}

// MaxAbsDiff is the largest |got[i]-want[i]|; +Inf when lengths differ or a
// value is NaN, so a broken output never passes a tolerance check.
func MaxAbsDiff(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var worst float64
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		worst = max(worst, d)
	}
	return worst
}

// NearTie reports whether the two largest probabilities of row are within
// tol, where float rounding may legitimately pick either class.
func NearTie(row []float32, tol float64) bool {
	a, b := math.Inf(-1), math.Inf(-1)
	for _, v := range row {
		switch x := float64(v); {
		case x > a:
			a, b = x, a
		case x > b:
			b = x
		}
	}
	return a-b <= tol
}
