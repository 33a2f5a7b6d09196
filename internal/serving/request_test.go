package serving

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/admission"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// These tests run serving.Request on the real karate model through the real
// repository: Begin, Route, Predict, Finish and Close on their success and
// failure paths, with the memory they hold and the lease they take checked
// at each step.

// unloads records the repository's VersionUnloaded events.
type unloads struct {
	mu sync.Mutex
	n  int
}

func (u *unloads) VersionLoaded(string, int64, time.Duration)  {}
func (u *unloads) VersionRefused(string, int64, string, error) {}
func (u *unloads) VersionUnloaded(string, int64)               { u.mu.Lock(); u.n++; u.mu.Unlock() }
func (u *unloads) count() int                                  { u.mu.Lock(); defer u.mu.Unlock(); return u.n }
func (u *unloads) waitFor(t *testing.T, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for u.count() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := u.count(); got != want {
		t.Fatalf("%d unloads after %v, want %d", got, within, want)
	}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func karateFixture(t *testing.T) golden.Fixture {
	t.Helper()
	return golden.Read(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate", "karate.json"))
}

// kindOf returns err's gcn.ErrorKind, failing the test when it has none.
func kindOf(t *testing.T, err error) gcn.ErrorKind {
	t.Helper()
	var e *gcn.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *gcn.Error", err, err)
	}
	return e.Kind
}

// phaseCount is how many requests of model gcnserve_phase_seconds counted
// for phase.
func phaseCount(t *testing.T, m *metrics.Metrics, model, phase string) uint64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metrics.Namespace+"_phase_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			if label(s, "model") == model && label(s, "phase") == phase {
				return s.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestRequestKarate: a request's whole passage on the real model: the
// memory it holds after Begin (DecodeBound of its bytes) and after Predict
// (Cost), PyTorch's probabilities, one observation per phase after Finish,
// and nothing held after Close, which can be called again.
func TestRequestKarate(t *testing.T) {
	const budgetBytes = 1 << 30
	budget := admission.New(admission.Options{Bytes: budgetBytes, MaxQueue: 4})
	m := metrics.New(metrics.Options{})
	svc := New(Config{Repository: infertest.KarateRepository(t, nil), Budget: budget, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	fx := karateFixture(t)
	ctx := testCtx(t)

	const wire = 8 << 10
	r, err := svc.Begin(ctx, wire)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if got, want := budget.InUse(), DecodeBound(wire); got != want {
		t.Errorf("after Begin(%d): %d bytes in use, want DecodeBound = %d", wire, got, want)
	}
	if r.Lease() != nil {
		t.Errorf("Lease before Route = %v, want nil", r.Lease())
	}
	featureDim, err := r.Route("", "")
	if err != nil {
		t.Fatal(err)
	}
	if featureDim != 34 || r.Info().FeatureDim != 34 {
		t.Errorf("Route: feature dimension %d, Info %d; want 34 (karate)", featureDim, r.Info().FeatureDim)
	}
	l := r.Lease()
	if l == nil || l.Name != svc.DefaultModel() || l.Version != 1 {
		t.Fatalf("Lease after Route = %+v, want the default model %q, version 1", l, svc.DefaultModel())
	}

	in := fx.Graph(t, featureDim)
	p, err := r.Predict(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if d := golden.MaxAbsDiff(p.Probabilities, fx.FlatProbabilities()); d > 1e-5 {
		t.Errorf("probabilities differ from PyTorch's by %g, want <= 1e-5", d)
	}
	info := r.Info()
	if got, want := budget.InUse(), Cost(wire, in.NumNodes, in.NumEdges(), info.FeatureDim, info.NumClasses); got != want {
		t.Errorf("after Predict: %d bytes in use, want Cost = %d", got, want)
	}

	if n := phaseCount(t, m, l.Name, "run"); n != 0 {
		t.Errorf("before Finish: %d run observations, want 0", n)
	}
	r.Finish()
	for _, phase := range []string{"decode", "queue", "run", "encode"} {
		if n := phaseCount(t, m, l.Name, phase); n != 1 {
			t.Errorf("after Finish: %d %s observations, want 1", n, phase)
		}
	}

	r.Close()
	if got := budget.InUse(); got != 0 {
		t.Errorf("after Close: %d bytes in use, want 0", got)
	}
	r.Close()
	if got := budget.InUse(); got != 0 {
		t.Errorf("after a second Close: %d bytes in use, want 0", got)
	}
}

// TestRequestBeginCapsAtBudget: a request whose decode bound exceeds the
// whole budget reserves the budget, not more, and is admitted.
func TestRequestBeginCapsAtBudget(t *testing.T) {
	budget := admission.New(admission.Options{Bytes: 1 << 20, MaxQueue: 1})
	svc := New(Config{Repository: infertest.KarateRepository(t, nil), Budget: budget})
	r, err := svc.Begin(testCtx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := budget.InUse(); got != 1<<20 {
		t.Errorf("Begin(1 MiB) on a 1 MiB budget holds %d bytes, want 1 MiB (DecodeBound capped)", got)
	}
}

// TestRequestBeginOverloaded: while one request holds the whole budget,
// the next is refused at once when no one may wait (KindOverloaded naming
// --max-queue), or after --queue-timeout when it may; it is admitted once
// the first closes.
func TestRequestBeginOverloaded(t *testing.T) {
	ctx := testCtx(t)
	repo := infertest.KarateRepository(t, nil)
	for _, tt := range []struct {
		name     string
		opts     admission.Options
		wantText string
	}{
		{"queue full", admission.Options{Bytes: 1 << 20, MaxQueue: 0}, "--max-queue"},
		{"queue timeout", admission.Options{Bytes: 1 << 20, MaxQueue: 1, QueueTimeout: 50 * time.Millisecond}, "--queue-timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			budget := admission.New(tt.opts)
			svc := New(Config{Repository: repo, Budget: budget})
			first, err := svc.Begin(ctx, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			_, err = svc.Begin(ctx, 100)
			if err == nil {
				t.Fatal("second Begin admitted while the first holds the whole budget")
			}
			if k := kindOf(t, err); k != gcn.KindOverloaded || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("second Begin: %v (%v), want KindOverloaded naming %s", err, k, tt.wantText)
			}
			first.Close()
			second, err := svc.Begin(ctx, 100)
			if err != nil {
				t.Fatalf("Begin after the first closed: %v", err)
			}
			second.Close()
			if got := budget.InUse(); got != 0 {
				t.Errorf("%d bytes in use after both closed, want 0", got)
			}
		})
	}
}

// TestRequestRouteErrors: a request naming an unknown model or version, or
// a version that is not a positive integer, gets the error kind and message
// the error table maps, holds no lease, and closes cleanly; a second Route
// is refused and keeps the first lease.
func TestRequestRouteErrors(t *testing.T) {
	svc := New(Config{Repository: infertest.KarateRepository(t, nil)})
	def := svc.DefaultModel()
	for _, tt := range []struct {
		model, version string
		kind           gcn.ErrorKind
		wantText       string
	}{
		{"nope", "", gcn.KindNotFound, `"nope"`},
		{def, "7", gcn.KindNotFound, "7"},
		{def, "x", gcn.KindInvalidArgument, `model version "x" is not a positive integer`},
		{def, "-1", gcn.KindInvalidArgument, `model version "-1" is not a positive integer`},
	} {
		r, err := svc.Begin(testCtx(t), 100)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Route(tt.model, tt.version)
		if err == nil {
			t.Errorf("Route(%q, %q) succeeded, want %v", tt.model, tt.version, tt.kind)
		} else if k := kindOf(t, err); k != tt.kind || !strings.Contains(err.Error(), tt.wantText) {
			t.Errorf("Route(%q, %q): %v (%v), want %v containing %s", tt.model, tt.version, err, k, tt.kind, tt.wantText)
		}
		if r.Lease() != nil {
			t.Errorf("Route(%q, %q) failed but holds a lease", tt.model, tt.version)
		}
		r.Close()
	}

	r, err := svc.Begin(testCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Route("", "1"); err != nil {
		t.Fatal(err)
	}
	first := r.Lease()
	if _, err := r.Route("", ""); err == nil || !strings.Contains(err.Error(), "routed twice") {
		t.Errorf("second Route: %v, want \"routed twice\"", err)
	}
	if r.Lease() != first {
		t.Error("second Route replaced the first lease")
	}
}

// TestRequestPredictRefusals: Predict before Route is a programming error;
// a graph over --max-nodes or --max-edges is KindTooLarge naming the flag;
// a cancelled context ends Predict with the context's error. Each leaves
// nothing held after Close.
func TestRequestPredictRefusals(t *testing.T) {
	repo := infertest.KarateRepository(t, nil)
	fx := karateFixture(t)
	in := fx.Graph(t, 34)

	budget := admission.New(admission.Options{Bytes: 1 << 30, MaxQueue: 4})
	svc := New(Config{Repository: repo, Budget: budget})
	r, err := svc.Begin(testCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Predict(testCtx(t), in); err == nil || !strings.Contains(err.Error(), "Predict before Route") {
		t.Errorf("Predict before Route: %v, want \"Predict before Route\"", err)
	}
	r.Close()

	for _, tt := range []struct {
		name     string
		cfg      Config
		wantText string
	}{
		{"max nodes", Config{MaxNodes: 10}, "request has 34 nodes, limit is 10 (--max-nodes)"},
		{"max edges", Config{MaxEdges: 5}, "edges, limit is 5 (--max-edges)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Repository, cfg.Budget = repo, budget
			r, err := New(cfg).Begin(testCtx(t), 100)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Route("", ""); err != nil {
				t.Fatal(err)
			}
			_, err = r.Predict(testCtx(t), in)
			if err == nil {
				t.Fatalf("Predict succeeded, want %s", tt.wantText)
			}
			if k := kindOf(t, err); k != gcn.KindTooLarge || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Predict: %v (%v), want KindTooLarge containing %q", err, k, tt.wantText)
			}
			r.Close()
			if got := budget.InUse(); got != 0 {
				t.Errorf("%d bytes in use after Close, want 0", got)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		r, err := svc.Begin(testCtx(t), 100)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Route("", ""); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		if _, err := r.Predict(ctx, in); !errors.Is(err, context.Canceled) {
			t.Errorf("Predict with a cancelled context: %v, want context.Canceled", err)
		}
		r.Finish() // a failed request records no phases
		r.Close()
		if got := budget.InUse(); got != 0 {
			t.Errorf("%d bytes in use after Close, want 0", got)
		}
	})
}

// TestRequestCloseReleasesLease: a request's lease keeps its version loaded
// after the repository closes; the request's Close releases it, so the
// version unloads once, and a second Close does not release it again.
func TestRequestCloseReleasesLease(t *testing.T) {
	events := &unloads{}
	repo := infertest.KarateRepository(t, events)
	svc := New(Config{Repository: repo})
	r, err := svc.Begin(testCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Route("", ""); err != nil {
		t.Fatal(err)
	}
	if err := repo.Close(); err != nil {
		t.Fatal(err)
	}
	if n := events.count(); n != 0 {
		t.Fatalf("%d unloads while a request holds the lease, want 0", n)
	}
	// The leased model still answers.
	if _, err := r.Predict(testCtx(t), karateFixture(t).Graph(t, 34)); err != nil {
		t.Errorf("Predict on the leased version after the repository closed: %v", err)
	}
	r.Close()
	events.waitFor(t, 1, 10*time.Second)
	r.Close()
	time.Sleep(50 * time.Millisecond)
	if n := events.count(); n != 1 {
		t.Errorf("%d unloads after a second Close, want 1", n)
	}
}
