package graphs_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphs"
)

// collect gathers an export's batches (copying what they alias).
func collect() (*[]graphs.Node, *[]graphs.Edge, func([]graphs.Node) error, func([]graphs.Edge) error) {
	var nodes []graphs.Node
	var edges []graphs.Edge
	return &nodes, &edges,
		func(ns []graphs.Node) error {
			for _, n := range ns {
				nodes = append(nodes, graphs.Node{ID: n.ID, Features: append([]float32(nil), n.Features...)})
			}
			return nil
		},
		func(es []graphs.Edge) error { edges = append(edges, es...); return nil }
}

// TestExportSnapshot: exporting from a snapshot gives exactly what
// ExportNodes and ExportEdges give on the graph (same order, duplicates,
// self loops, free slots), for several batch sizes; a damaged snapshot is
// an error, not a panic.
func TestExportSnapshot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	g := graphs.New(3)
	d := &graphs.Delta{}
	for i := range 200 {
		d.UpsertNodes = append(d.UpsertNodes, graphs.Node{ID: fmt.Sprint("v", i), Features: []float32{float32(i), 1, -1}})
	}
	for range 600 {
		d.AddEdges = append(d.AddEdges, graphs.Edge{Source: fmt.Sprint("v", r.IntN(200)), Target: fmt.Sprint("v", r.IntN(200))})
	}
	apply(t, g, d)
	apply(t, g, &graphs.Delta{RemoveNodes: []string{"v3", "v77", "v150"}, AddEdges: []graphs.Edge{{Source: "v5", Target: "v5"}, {Source: "v5", Target: "v6"}, {Source: "v5", Target: "v6"}}})
	apply(t, g, &graphs.Delta{UpsertNodes: []graphs.Node{{ID: "new", Features: []float32{9, 9, 9}}}, AddEdges: []graphs.Edge{{Source: "new", Target: "v1"}}})
	snap := g.AppendSnapshot(nil)
	for _, batch := range []int{1, 7, 1024} {
		wn, we, fn, fe := collect()
		g.ExportNodes(batch, fn)
		g.ExportEdges(batch, fe)
		gn, ge, fn2, fe2 := collect()
		if err := graphs.ExportSnapshot(snap, batch, fn2, fe2); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*gn, *wn) || !reflect.DeepEqual(*ge, *we) {
			t.Fatalf("batch %d: snapshot export differs: %d nodes %d edges, want %d and %d", batch, len(*gn), len(*ge), len(*wn), len(*we))
		}
	}
	for cut := 1; cut < len(snap); cut += len(snap)/97 + 1 {
		_, _, fn, fe := collect()
		if err := graphs.ExportSnapshot(snap[:cut], 16, fn, fe); err == nil {
			t.Fatalf("snapshot cut at %d of %d bytes: no error", cut, len(snap))
		}
	}
}
