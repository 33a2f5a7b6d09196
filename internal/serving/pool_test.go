package serving

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// karateWire is a karate-shaped request's wire bytes (34 features), random
// by seed.
func karateWire(t *testing.T, seed int64) []byte {
	t.Helper()
	b, err := proto.Marshal(graphwire.SyntheticGraph(34, 78, 34, seed))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// karateRepo opens model/karate.onnx with opts.
func karateRepo(t *testing.T, opts ...gcn.Option) *modelrepo.Repository {
	t.Helper()
	repo, err := modelrepo.Open(modelrepo.Config{
		ModelFile:  filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"),
		Options:    append([]gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))}, opts...),
		MinFileAge: -1,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return repo
}

// decodeRun runs one request as the gRPC transport does: Begin, decode into
// the request's tensor pool, Predict, Recycle, Close. It returns Predict's
// error and the scores' first value.
func decodeRun(ctx context.Context, t *testing.T, svc *Service, wire []byte) (float32, error) {
	r, err := svc.Begin(context.Background(), int64(len(wire)))
	if err != nil {
		t.Error(err)
		return 0, err
	}
	defer r.Close()
	g, err := graphwire.DecodePooled(wire, r.Route, graphwire.Limits{}, r.TensorPool())
	if err != nil {
		t.Error(err)
		return 0, err
	}
	defer r.Recycle(g)
	p, err := r.Predict(ctx, gcn.Tensors{NumNodes: g.NumNodes(), Features: g.Features, EdgeIndex: g.EdgeIndex})
	if err != nil {
		return 0, err
	}
	return p.Scores[0], nil
}

// TestTensorPoolLifetime: a model that does not batch decodes into the
// pool and every tensor goes back, whether the request succeeds or is
// cancelled; a batching model gets no pool (its batcher may read a
// cancelled request's tensors after Predict returned). Many requests at
// once, some cancelled: run with -race.
func TestTensorPoolLifetime(t *testing.T) {
	// Two different requests: a tensor reused while another request's
	// model still read it would show as a wrong score.
	wires := [2][]byte{karateWire(t, 1), karateWire(t, 2)}
	for _, tc := range []struct {
		name     string
		opts     []gcn.Option
		wantPool bool
	}{
		{name: "no batching", wantPool: true},
		{name: "batching", opts: []gcn.Option{gcn.WithBatching(gcn.BatchOptions{})}, wantPool: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every tensor of a karate request is pooled (MinBytes 1).
			pool := bufpool.New(bufpool.Options{MinBytes: 1})
			t.Cleanup(func() { pool.Close() })
			svc := New(Config{Repository: karateRepo(t, tc.opts...), TensorPool: pool, Logger: slog.New(slog.DiscardHandler)})

			var want [2]float32
			for k, w := range wires {
				var err error
				if want[k], err = decodeRun(testCtx(t), t, svc, w); err != nil {
					t.Fatal(err)
				}
			}
			if want[0] == want[1] {
				t.Fatalf("both requests score %g: they do not tell tensors apart", want[0])
			}
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithCancel(testCtx(t))
					if i%4 >= 2 {
						cancel() // before, or while, the model runs
					}
					defer cancel()
					got, err := decodeRun(ctx, t, svc, wires[i%2])
					if err == nil && got != want[i%2] {
						t.Errorf("request %d: score %g, want %g (pooled tensors reused under a reader?)", i, got, want[i%2])
					}
				}()
			}
			wg.Wait()
			s := pool.Stats()
			if s.InUse != 0 {
				t.Errorf("after every request: %d bytes of the pool in use, want 0 (all given back)", s.InUse)
			}
			if got := s.Maps > 0; got != tc.wantPool {
				t.Errorf("pool used: %v (%+v), want %v", got, s, tc.wantPool)
			}
		})
	}
}
