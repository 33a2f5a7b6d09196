package modelrepo_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// fixture returns the path of a model file: "karate" is model/karate.onnx,
// "cora" model/cora.onnx, anything else internal/modelrepo/testdata/<name>.onnx.
func fixture(t testing.TB, name string) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	switch name {
	case "karate", "cora":
		return filepath.Join(root, "model", name+".onnx")
	}
	return filepath.Join(root, "internal", "modelrepo", "testdata", name+".onnx")
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// publish puts data at dir/model/version/model.onnx atomically: written in a
// hidden staging directory, then renamed into place.
func publish(t testing.TB, dir, model string, version int, data []byte) {
	t.Helper()
	stage, err := os.MkdirTemp(filepath.Join(dir, model), ".stage")
	if err != nil {
		if err := os.MkdirAll(filepath.Join(dir, model), 0o755); err != nil {
			t.Fatal(err)
		}
		if stage, err = os.MkdirTemp(filepath.Join(dir, model), ".stage"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(stage, modelrepo.ModelFileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, model, itoa(version))
	if err := os.RemoveAll(final); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(stage, final); err != nil {
		t.Fatal(err)
	}
}

// replaceFile renames new content over an existing version's file.
func replaceFile(t testing.TB, dir, model string, version int, data []byte) {
	t.Helper()
	path := filepath.Join(dir, model, itoa(version), modelrepo.ModelFileName)
	tmp := filepath.Join(filepath.Dir(path), ".model.onnx.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func unpublish(t testing.TB, dir, model string, version int) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(dir, model, itoa(version))); err != nil {
		t.Fatal(err)
	}
}

func itoa(v int) string { return strconv.Itoa(v) }

// events counts the repository's events.
type events struct {
	mu       sync.Mutex
	loaded   []string
	refused  []string // "name/version: reason"
	unloaded []string
}

func (e *events) VersionLoaded(name string, version int64, _ time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.loaded = append(e.loaded, name+"/"+strconv.FormatInt(version, 10))
}

func (e *events) VersionRefused(name string, version int64, _ string, reason error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refused = append(e.refused, name+"/"+strconv.FormatInt(version, 10)+": "+reason.Error())
}

func (e *events) VersionUnloaded(name string, version int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unloaded = append(e.unloaded, name+"/"+strconv.FormatInt(version, 10))
}

func (e *events) counts() (loaded, refused, unloaded int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.loaded), len(e.refused), len(e.unloaded)
}

// logLines collects log records' messages and attributes, one string each.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) handler() slog.Handler { return &lineHandler{l: l} }

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

type lineHandler struct {
	l     *logLines
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, b.String())
	h.l.mu.Unlock()
	return nil
}
func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{l: h.l, attrs: append(h.attrs, as...)}
}
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

// testConfig is a repository config for dir with the real ONNX Runtime,
// files loaded at once (they are published atomically) and no polling.
func testConfig(t testing.TB, dir string) (modelrepo.Config, *events, *logLines) {
	t.Helper()
	ev, logs := &events{}, &logLines{}
	return modelrepo.Config{
		Repository: dir,
		MinFileAge: -1,
		Options:    []gcn.Option{gcn.WithLibraryPath(testenv.ORTLibrary(t))},
		Logger:     slog.New(logs.handler()),
		Events:     ev,
	}, ev, logs
}

func open(t testing.TB, cfg modelrepo.Config) *modelrepo.Repository {
	t.Helper()
	r, err := modelrepo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func reload(t testing.TB, r *modelrepo.Repository) {
	t.Helper()
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// testGraph is a graph for a model with f features: n nodes with random
// nonnegative features and a ring of edges, the same for every call with the
// same arguments.
func testGraph(f, n int) gcn.Tensors {
	rng := rand.New(rand.NewPCG(uint64(f), uint64(n)))
	g := gcn.Tensors{NumNodes: n, Features: make([]float32, n*f), EdgeIndex: make([]int64, 2*n)}
	for i := range g.Features {
		if rng.IntN(4) == 0 {
			g.Features[i] = 1
		}
	}
	for i := range n {
		g.EdgeIndex[i], g.EdgeIndex[n+i] = int64(i), int64((i+1)%n)
	}
	return g
}

// golden returns the scores the model file at path gives g, computed by its
// own session.
func golden(t testing.TB, path string, g gcn.Tensors) []float32 {
	t.Helper()
	m, err := gcn.Open(path, gcn.WithLibraryPath(testenv.ORTLibrary(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := m.Predict(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	return p.Scores
}

// state returns the state of name/version in r.Models(), and its reason.
func state(r *modelrepo.Repository, name string, version int64) (modelrepo.State, string, bool) {
	for _, m := range r.Models() {
		if m.Name != name {
			continue
		}
		for _, v := range m.Versions {
			if v.Version == version {
				return v.State, v.Reason, true
			}
		}
	}
	return 0, "", false
}

// servedVersion acquires name's default version and returns its number.
func servedVersion(t testing.TB, r *modelrepo.Repository, name string) int64 {
	t.Helper()
	l, err := r.Acquire(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	return l.Version
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
