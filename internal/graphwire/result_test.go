package graphwire

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// resultMessage is the GCNResult that AppendResult(ids, scores, pred)
// should encode, built with the generated types.
func resultMessage(ids []string, scores []float32, pred *Predictions) *gcnpb.GCNResult {
	m := &gcnpb.GCNResult{NodeScores: make(map[string]float32, len(ids))}
	for i, id := range ids {
		m.NodeScores[id] = scores[i]
	}
	if pred == nil {
		return m
	}
	c := pred.NumClasses
	for i, id := range ids {
		class := pred.ClassIndex[i]
		name := strconv.Itoa(int(class))
		if class >= 0 && int(class) < len(pred.ClassNames) {
			name = pred.ClassNames[class]
		}
		m.Predictions = append(m.Predictions, &gcnpb.NodePrediction{
			Id:            id,
			ClassIndex:    class,
			ClassName:     name,
			Probabilities: pred.Probabilities[i*c : (i+1)*c],
		})
	}
	return m
}

// checkResult decodes out with proto.Unmarshal and compares it with what
// AppendResult was asked to encode, floats bit for bit.
func checkResult(t *testing.T, out []byte, ids []string, scores []float32, pred *Predictions) {
	t.Helper()
	var got gcnpb.GCNResult
	if err := proto.Unmarshal(out, &got); err != nil {
		t.Fatalf("proto.Unmarshal of AppendResult's output: %v", err)
	}
	want := resultMessage(ids, scores, pred)
	if len(got.NodeScores) != len(want.NodeScores) {
		t.Fatalf("got %d node scores, want %d", len(got.NodeScores), len(want.NodeScores))
	}
	for id, w := range want.NodeScores {
		g, ok := got.NodeScores[id]
		// protobuf-go decodes map values through a float64, which turns a
		// signaling NaN quiet: any NaN matches a NaN.
		bothNaN := g != g && w != w
		if !ok || (math.Float32bits(g) != math.Float32bits(w) && !bothNaN) {
			t.Errorf("node_scores[%q]: got %v (present %v), want %v", id, g, ok, w)
		}
	}
	if len(got.Predictions) != len(want.Predictions) {
		t.Fatalf("got %d predictions, want %d", len(got.Predictions), len(want.Predictions))
	}
	for i, w := range want.Predictions {
		g := got.Predictions[i]
		if g.GetId() != w.GetId() || g.GetClassIndex() != w.GetClassIndex() || g.GetClassName() != w.GetClassName() ||
			!slices.EqualFunc(g.GetProbabilities(), w.GetProbabilities(), func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
			t.Errorf("prediction %d: got %v, want %v", i, g, w)
		}
	}
}

func TestAppendResult(t *testing.T) {
	// Ids of lengths around 127 and 128 bytes move entry sizes across a
	// varint length boundary.
	var boundaryIDs []string
	for n := 118; n <= 130; n++ {
		boundaryIDs = append(boundaryIDs, strings.Repeat("b", n))
	}
	tests := []struct {
		name   string
		ids    []string
		scores []float32
		pred   *Predictions
	}{
		{name: "empty"},
		{name: "empty with predictions", pred: &Predictions{NumClasses: 3}},
		{name: "scores", ids: []string{"a", "b", "ノード"}, scores: []float32{0.25, 1, 0}},
		{name: "empty id", ids: []string{""}, scores: []float32{0.5}},
		{name: "scores around varint boundaries", ids: boundaryIDs, scores: make([]float32, len(boundaryIDs))},
		{name: "predictions", ids: []string{"a", "b", "c"}, scores: []float32{0.5, 0.75, 0.125}, pred: &Predictions{
			NumClasses:    3,
			Probabilities: []float32{0.5, 0.25, 0.25, 0.125, 0.75, 0.125, 0, 0.125, 0.875},
			ClassIndex:    []int32{0, 1, 2},
			ClassNames:    []string{"x", "y", "z"},
		}},
		{name: "class names from indexes", ids: []string{"", "b", "c", "d"}, scores: []float32{1, 1, 1, 1}, pred: &Predictions{
			NumClasses:    2,
			Probabilities: []float32{1, 0, 0, 1, 1, 0, 0, 1},
			ClassIndex:    []int32{0, 1, -1, 1234567},
			ClassNames:    []string{"", "one"}, // class 0's empty name is left out, like any empty string
		}},
		{name: "no classes", ids: []string{"a"}, scores: []float32{0}, pred: &Predictions{ClassIndex: []int32{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := ResultSize(tt.ids, tt.pred)
			prefix := []byte("prefix")
			out := AppendResult(prefix, tt.ids, tt.scores, tt.pred)
			if got, want := len(out)-len(prefix), size; got != want {
				t.Fatalf("appended %d bytes, ResultSize said %d", got, want)
			}
			if got := string(out[:len(prefix)]); got != "prefix" {
				t.Fatalf("got prefix %q, want %q", got, "prefix")
			}
			checkResult(t, out[len(prefix):], tt.ids, tt.scores, tt.pred)

			// With ids in sorted order, the bytes are exactly what
			// deterministic proto.Marshal writes.
			if slices.IsSorted(tt.ids) && !slices.Contains(tt.ids, "") {
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(resultMessage(tt.ids, tt.scores, tt.pred))
				if err != nil {
					t.Fatal(err)
				}
				if got := out[len(prefix):]; string(got) != string(want) {
					t.Errorf("got bytes %x, want %x (deterministic proto.Marshal)", got, want)
				}
			}
		})
	}
}

func TestAppendResultAllocatesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("-race changes allocation counts")
	}
	g := SyntheticGraph(1000, 0, 0, 1)
	ids := make([]string, len(g.Nodes))
	for i, n := range g.Nodes {
		ids[i] = n.Id
	}
	scores := make([]float32, len(ids))
	pred := &Predictions{NumClasses: 7, Probabilities: make([]float32, 7*len(ids)), ClassIndex: make([]int32, len(ids)), ClassNames: []string{"a", "b", "c", "d", "e", "f", "g"}}
	if got := testing.AllocsPerRun(10, func() { AppendResult(nil, ids, scores, pred) }); got != 1 {
		t.Errorf("AppendResult(nil, ...) made %v allocations, want 1", got)
	}
	buf := make([]byte, 0, ResultSize(ids, pred))
	if got := testing.AllocsPerRun(10, func() { AppendResult(buf, ids, scores, pred) }); got != 0 {
		t.Errorf("AppendResult into a buffer of ResultSize made %v allocations, want 0", got)
	}
}

func TestAppendResultPanicsOnShortInputs(t *testing.T) {
	tests := []struct {
		name   string
		scores []float32
		pred   *Predictions
	}{
		{name: "scores", scores: []float32{1}},
		{name: "class indexes", scores: []float32{1, 2}, pred: &Predictions{NumClasses: 1, Probabilities: []float32{1, 1}, ClassIndex: []int32{0}}},
		{name: "probabilities", scores: []float32{1, 2}, pred: &Predictions{NumClasses: 2, Probabilities: []float32{1, 1, 1}, ClassIndex: []int32{0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendResult did not panic")
				}
			}()
			AppendResult(nil, []string{"a", "b"}, tt.scores, tt.pred)
		})
	}
}
