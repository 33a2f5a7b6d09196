package client

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// Table is a scored graph, one row per node, the form WriteTable and
// WriteCSV print. It is built from a server's answer by TableFromResult,
// or from an in-process prediction (package gcn) field by field, so both
// paths print the same bytes.
type Table struct {
	// IDs and Scores: one entry per node.
	IDs    []string
	Scores []float32
	// Classes is each node's predicted class name; nil: no class column.
	Classes []string
	// Probabilities is each node's class probability vector; nil: no
	// probability columns. ClassNames heads its columns (class indexes when
	// it is shorter).
	Probabilities [][]float32
	ClassNames    []string
}

// TableFromResult lines up res with its request g: a row per node of g, in
// request order, with the score res gives it and, when res carries
// predictions (g.IncludePredictions), its class and probabilities. It fails
// when res misses a node of g.
func TableFromResult(g *gcnpb.GraphData, res *gcnpb.GCNResult) (Table, error) {
	n := len(g.GetNodes())
	t := Table{IDs: make([]string, n), Scores: make([]float32, n)}
	scores := res.GetNodeScores()
	for i, node := range g.GetNodes() {
		s, ok := scores[node.GetId()]
		if !ok {
			return Table{}, fmt.Errorf("result has no score for node %d (%q)", i, node.GetId())
		}
		t.IDs[i], t.Scores[i] = node.GetId(), s
	}
	preds := res.GetPredictions()
	if len(preds) == 0 {
		return t, nil
	}
	if len(preds) != n {
		return Table{}, fmt.Errorf("result has %d predictions for %d nodes", len(preds), n)
	}
	t.Classes = make([]string, n)
	t.Probabilities = make([][]float32, n)
	for i, p := range preds {
		if p.GetId() != t.IDs[i] {
			return Table{}, fmt.Errorf("prediction %d is for node %q, want %q", i, p.GetId(), t.IDs[i])
		}
		t.Classes[i], t.Probabilities[i] = p.GetClassName(), p.GetProbabilities()
	}
	return t, nil
}

// Top returns the k rows with the highest scores, highest first (equal
// scores in table order); all rows, in table order, when k <= 0. The rows
// share t's slices.
func (t Table) Top(k int) Table {
	if k <= 0 {
		return t
	}
	order := make([]int, len(t.IDs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(t.Scores[b], t.Scores[a]) })
	order = order[:min(k, len(order))]
	top := Table{IDs: make([]string, len(order)), Scores: make([]float32, len(order)), ClassNames: t.ClassNames}
	if t.Classes != nil {
		top.Classes = make([]string, len(order))
	}
	if t.Probabilities != nil {
		top.Probabilities = make([][]float32, len(order))
	}
	for j, i := range order {
		top.IDs[j], top.Scores[j] = t.IDs[i], t.Scores[i]
		if t.Classes != nil {
			top.Classes[j] = t.Classes[i]
		}
		if t.Probabilities != nil {
			top.Probabilities[j] = t.Probabilities[i]
		}
	}
	return top
}

// WithoutProbabilities returns t without its probability columns.
func (t Table) WithoutProbabilities() Table {
	t.Probabilities, t.ClassNames = nil, nil
	return t
}

// header is the column names: node, score, class, then one per class
// probability.
func (t Table) header() []string {
	h := []string{"node", "score"}
	if t.Classes != nil {
		h = append(h, "class")
	}
	for c := range t.numClasses() {
		name := strconv.Itoa(c)
		if c < len(t.ClassNames) {
			name = t.ClassNames[c]
		}
		h = append(h, "p("+name+")")
	}
	return h
}

func (t Table) numClasses() int {
	n := 0
	for _, p := range t.Probabilities {
		n = max(n, len(p))
	}
	return n
}

// row is row i's cells, numbers with 4 decimals.
func (t Table) row(i int, cells []string) []string {
	cells = append(cells[:0], t.IDs[i], strconv.FormatFloat(float64(t.Scores[i]), 'f', 4, 32))
	if t.Classes != nil {
		cells = append(cells, t.Classes[i])
	}
	if t.Probabilities != nil {
		p := t.Probabilities[i]
		for c := range t.numClasses() {
			cell := ""
			if c < len(p) {
				cell = strconv.FormatFloat(float64(p[c]), 'f', 4, 32)
			}
			cells = append(cells, cell)
		}
	}
	return cells
}

// WriteTable prints t as aligned columns for a terminal: a header line
// (node, score, class, p(<class>)...), then one line per row, numbers with 4
// decimals.
func WriteTable(w io.Writer, t Table) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	write := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, c)
		}
		io.WriteString(tw, "\n")
	}
	write(t.header())
	var cells []string
	for i := range t.IDs {
		cells = t.row(i, cells)
		write(cells)
	}
	return tw.Flush()
}

// WriteCSV prints t as CSV (RFC 4180) with the columns of WriteTable.
func WriteCSV(w io.Writer, t Table) error {
	cw := csv.NewWriter(w)
	cw.Write(t.header())
	var cells []string
	for i := range t.IDs {
		cells = t.row(i, cells)
		cw.Write(cells)
	}
	cw.Flush()
	return cw.Error()
}
