// Package oiptest builds the serving layer the oip transport runs on, over
// real model files, for tests that need the real inference path without a
// whole server.
package oiptest

import (
	"log/slog"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/oip"
)

// Backend serves the model file at path (modelrepo's single-file mode: one
// model, named as its metadata says, version 1) through a serving.Service
// with the given request byte limit and no memory budget, on the real ONNX
// Runtime with the server's default batching. The repository closes when
// the test ends.
func Backend(t testing.TB, path string, maxRequestBytes int) oip.Backend {
	t.Helper()
	repo, err := modelrepo.Open(modelrepo.Config{
		ModelFile:  path,
		MinFileAge: -1,
		Options: []gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t)),
			gcn.WithBatching(gcn.DefaultBatchOptions())},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := repo.Close(); err != nil {
			t.Error(err)
		}
	})
	svc := serving.New(serving.Config{Repository: repo, MaxRequestBytes: maxRequestBytes})
	return oip.ServingBackend(svc, nil)
}
