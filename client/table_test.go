package client

import (
	"bytes"
	"testing"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

func TestTableFromResult(t *testing.T) {
	g := &gcnpb.GraphData{Nodes: []*gcnpb.Node{{Id: "a"}, {Id: "b"}, {Id: "c"}}}
	res := &gcnpb.GCNResult{
		NodeScores: map[string]float32{"a": 0.25, "b": 0.75, "c": 0.5},
		Predictions: []*gcnpb.NodePrediction{
			{Id: "a", ClassName: "x", Probabilities: []float32{0.75, 0.25}},
			{Id: "b", ClassName: "y", ClassIndex: 1, Probabilities: []float32{0.25, 0.75}},
			{Id: "c", ClassName: "x", Probabilities: []float32{0.5, 0.5}},
		},
	}
	tab, err := TableFromResult(g, res)
	if err != nil {
		t.Fatal(err)
	}
	tab.ClassNames = []string{"x", "y"}
	for _, tc := range []struct {
		name string
		tab  Table
		csv  bool
		want string
	}{
		{"table", tab.WithoutProbabilities(), false, "node  score   class\na     0.2500  x\nb     0.7500  y\nc     0.5000  x\n"},
		{"top 2", tab.WithoutProbabilities().Top(2), false, "node  score   class\nb     0.7500  y\nc     0.5000  x\n"},
		{"probabilities", tab.Top(1), false, "node  score   class  p(x)    p(y)\nb     0.7500  y      0.2500  0.7500\n"},
		{"csv", tab.Top(5), true, "node,score,class,p(x),p(y)\nb,0.7500,y,0.2500,0.7500\nc,0.5000,x,0.5000,0.5000\na,0.2500,x,0.7500,0.2500\n"},
		{"scores only", Table{IDs: []string{"a"}, Scores: []float32{1}}, true, "node,score\na,1.0000\n"},
	} {
		var buf bytes.Buffer
		write := WriteTable
		if tc.csv {
			write = WriteCSV
		}
		if err := write(&buf, tc.tab); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, buf.String(), tc.want)
		}
	}

	delete(res.NodeScores, "b")
	if _, err := TableFromResult(g, res); err == nil || err.Error() != `result has no score for node 1 ("b")` {
		t.Errorf("missing score: got %v", err)
	}
}
