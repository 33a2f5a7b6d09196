// Package infertest holds test helpers for code that runs the real model:
// opening the bundled model on the real ONNX Runtime, and random graphs.
package infertest

import (
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// OpenKarate opens the bundled default model, model/karate.onnx, on the
// real ONNX Runtime, and closes it when the test ends.
func OpenKarate(t testing.TB, opts ...gcn.Option) *gcn.Model {
	t.Helper()
	return Open(t, filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"), opts...)
}

// Open opens the model at path on the real ONNX Runtime and closes it when
// the test ends.
func Open(t testing.TB, path string, opts ...gcn.Option) *gcn.Model {
	t.Helper()
	opts = append([]gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))}, opts...)
	m, err := gcn.Open(path, opts...)
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
func RandomGraph(seed uint64, n, e, f int) gcn.Tensors {
	r := rand.New(rand.NewPCG(seed, 1))
	g := gcn.Tensors{NumNodes: n, Features: make([]float32, n*f), EdgeIndex: make([]int64, 2*e)}
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

// KarateRepository serves model/karate.onnx through a model repository (as
// the server does, with no minimum file age and a discarded log), reporting
// to events if it is not nil; it is closed when the test ends.
func KarateRepository(t testing.TB, events modelrepo.Events) *modelrepo.Repository {
	t.Helper()
	repo, err := modelrepo.Open(modelrepo.Config{
		ModelFile:  filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"),
		Options:    []gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))},
		MinFileAge: -1,
		Logger:     slog.New(slog.DiscardHandler),
		Events:     events,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := repo.Close(); err != nil {
			t.Errorf("close repository: %v", err)
		}
	})
	return repo
}
