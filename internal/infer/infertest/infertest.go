// Package infertest holds test helpers for code that runs the real model:
// opening the bundled model on the real ONNX Runtime, and random graphs.
package infertest

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/gcnserve/gcnserve/internal/infer"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// OpenKarate opens the bundled default model, model/karate.onnx, on the
// real ONNX Runtime, and closes it when the test ends.
func OpenKarate(t testing.TB, opts infer.Options) *infer.Model {
	t.Helper()
	opts.LibraryPath = testenv.ORTLibrary(t)
	m, err := infer.Open(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// RandomGraph is a reproducible graph with n nodes, f features per node
// (about a third nonzero, in [0, 1)) and e edges between random nodes, so
// duplicate edges and self loops occur as chance gives them.
func RandomGraph(seed uint64, n, e, f int) infer.Graph {
	r := rand.New(rand.NewPCG(seed, 1))
	g := infer.Graph{NumNodes: n, Features: make([]float32, n*f), EdgeIndex: make([]int64, 2*e)}
	for i := range g.Features {
		if r.IntN(3) == 0 {
			g.Features[i] = r.Float32()
		}
	}
	for i := range g.EdgeIndex {
		g.EdgeIndex[i] = int64(r.IntN(n))
	}
	return g
}
