package modelrepo_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
)

func kindOf(err error) gcn.ErrorKind {
	var e *gcn.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestOpenRoutesByNameAndVersion(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	publish(t, dir, "karate", 2, readFixture(t, "karate_seed1"))
	publish(t, dir, "cora", 3, readFixture(t, "cora"))
	cfg, ev, _ := testConfig(t, dir)
	r := open(t, cfg)

	if got := r.Default(); got != "" {
		t.Errorf("Default() = %q with two models and no DefaultModel, want \"\"", got)
	}
	l, err := r.Acquire("karate", 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Version != 2 || l.Name != "karate" || l.Model.Info().FeatureDim != 34 {
		t.Errorf("Acquire(karate, 0) = %s v%d F=%d, want karate v2 F=34", l.Name, l.Version, l.Model.Info().FeatureDim)
	}
	g := testGraph(34, 12)
	p, err := l.Model.Predict(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if want := golden(t, fixture(t, "karate_seed1"), g); !slices.Equal(p.Scores, want) {
		t.Errorf("karate v2 scores %v, want the karate_seed1 golden %v", p.Scores[:3], want[:3])
	}
	l.Release()
	l.Release() // idempotent

	l, err = r.Acquire("cora", 3)
	if err != nil || l.Model.Info().FeatureDim != 1433 {
		t.Fatalf("Acquire(cora, 3) = %v, %v", l, err)
	}
	l.Release()

	for _, tt := range []struct {
		name    string
		version int64
		kind    gcn.ErrorKind
		msg     []string
	}{
		{"karate", 1, gcn.KindNotFound, []string{`"karate"`, "version 1", "served versions: 2"}},
		{"karate", 9, gcn.KindNotFound, []string{"version 9", "served versions: 2"}},
		{"nope", 0, gcn.KindNotFound, []string{`"nope"`, "models: cora, karate"}},
		{"", 0, gcn.KindNotFound, []string{"no default model", "cora, karate"}},
	} {
		_, err := r.Acquire(tt.name, tt.version)
		if kindOf(err) != tt.kind {
			t.Errorf("Acquire(%q, %d) = %v, want kind %d", tt.name, tt.version, err, tt.kind)
			continue
		}
		for _, s := range tt.msg {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Acquire(%q, %d) error %q does not say %q", tt.name, tt.version, err, s)
			}
		}
	}

	st, reason, _ := state(r, "karate", 1)
	if st != modelrepo.StateUnavailable || !strings.Contains(reason, "policy latest") {
		t.Errorf("karate 1: %s %q, want UNAVAILABLE not selected by policy", st, reason)
	}
	if loaded, refused, _ := ev.counts(); loaded != 2 || refused != 0 {
		t.Errorf("events: %d loaded, %d refused; want 2, 0 (karate 1 is not loaded under latest)", loaded, refused)
	}
	if got := r.PeakResident("karate"); got != 1 {
		t.Errorf("karate sessions at most %d, want 1", got)
	}
}

func TestDefaultModel(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, _, _ := testConfig(t, dir)
	r := open(t, cfg)
	if got := r.Default(); got != "karate" {
		t.Errorf("Default() = %q with one model, want karate", got)
	}
	if l, err := r.Acquire("", 0); err != nil || l.Name != "karate" {
		t.Fatalf("Acquire(\"\", 0) = %v, %v", l, err)
	} else {
		l.Release()
	}
	r.Close()

	publish(t, dir, "cora", 1, readFixture(t, "cora"))
	cfg.DefaultModel = "cora"
	r = open(t, cfg)
	if l, err := r.Acquire("", 0); err != nil || l.Name != "cora" {
		t.Fatalf("Acquire(\"\", 0) with DefaultModel cora = %v, %v", l, err)
	} else {
		l.Release()
	}

	cfg.DefaultModel = "missing"
	if r, err := modelrepo.Open(cfg); err == nil {
		r.Close()
		t.Error("Open with a default model that does not exist succeeded")
	} else if !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("Open error %q does not name the default model", err)
	}
}

func TestOpenFailsWithNothingServable(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, []byte("not onnx"))
	cfg, ev, _ := testConfig(t, dir)
	_, err := modelrepo.Open(cfg)
	if err == nil || !strings.Contains(err.Error(), "nothing to serve") || !strings.Contains(err.Error(), "FAILED") {
		t.Errorf("Open of a repository with only a corrupt file: %v, want nothing to serve ... FAILED", err)
	}
	if _, refused, _ := ev.counts(); refused != 1 {
		t.Errorf("%d refusals, want 1", refused)
	}
	cfg.Repository = filepath.Join(dir, "missing")
	if _, err := modelrepo.Open(cfg); err == nil {
		t.Error("Open of a missing directory succeeded")
	}
	if _, err := modelrepo.Open(modelrepo.Config{}); err == nil {
		t.Error("Open with neither repository nor file succeeded")
	}
}

func TestVersionPolicyFile(t *testing.T) {
	dir := t.TempDir()
	for v, f := range []string{"karate", "karate_seed1", "karate_seed2"} {
		publish(t, dir, "karate", v+1, readFixture(t, f))
	}
	writePolicy := func(text string) {
		t.Helper()
		// Atomically: the poll loop may be reading it (a drain wakes it).
		tmp := filepath.Join(dir, "karate", ".policy.tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "karate", modelrepo.PolicyFileName)); err != nil {
			t.Fatal(err)
		}
	}
	served := func(r *modelrepo.Repository) []int64 {
		var vs []int64
		for _, m := range r.Models() {
			for _, v := range m.Versions {
				if v.State == modelrepo.StateReady {
					vs = append(vs, v.Version)
				}
			}
		}
		return vs
	}
	writePolicy("# two newest\nlatest:2\n")
	cfg, _, logs := testConfig(t, dir)
	r := open(t, cfg)
	if got := served(r); !slices.Equal(got, []int64{2, 3}) {
		t.Errorf("latest:2 serves %v, want [2 3]", got)
	}
	for _, step := range []struct {
		policy string
		want   []int64
	}{
		{"all", []int64{1, 2, 3}},
		{"specific:1,3", []int64{1, 3}},
		{"latest", []int64{3}},
	} {
		writePolicy(step.policy)
		reload(t, r)
		if got := served(r); !slices.Equal(got, step.want) {
			t.Errorf("%s serves %v, want %v", step.policy, got, step.want)
		}
		if l, err := r.Acquire("karate", 0); err != nil || l.Version != 3 {
			t.Errorf("Acquire(karate, 0) under %s = %v, %v; want version 3", step.policy, l, err)
		} else {
			l.Release()
		}
	}
	if got := r.PeakResident("karate"); got > 3 {
		t.Errorf("karate had %d sessions open at once, want at most 3", got)
	}

	writePolicy("newest please")
	reload(t, r)
	reload(t, r)
	if got := served(r); !slices.Equal(got, []int64{3}) {
		t.Errorf("after a broken policy file serves %v, want [3] (the policy in force)", got)
	}
	if n := logs.count("ignoring version policy file"); n != 1 {
		t.Log(logs.lines)
		t.Errorf("%d log lines about the broken policy file, want 1", n)
	}

	if err := os.Remove(filepath.Join(dir, "karate", modelrepo.PolicyFileName)); err != nil {
		t.Fatal(err)
	}
	cfg.Policy, _ = modelrepo.ParsePolicy("all")
	r2 := open(t, cfg)
	if got := served(r2); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("server policy all serves %v, want [1 2 3]", got)
	}
}

func TestPublishAndUnpublish(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, ev, _ := testConfig(t, dir)
	changes := 0
	cfg.OnChange = func() { changes++ }
	r := open(t, cfg)
	g := testGraph(34, 20)

	check := func(wantVersion int64, fixtureName string) {
		t.Helper()
		l, err := r.Acquire("karate", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		if l.Version != wantVersion {
			t.Fatalf("serving version %d, want %d", l.Version, wantVersion)
		}
		p, err := l.Model.Predict(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		if want := golden(t, fixture(t, fixtureName), g); !slices.Equal(p.Scores, want) {
			t.Errorf("version %d scores differ from %s's", wantVersion, fixtureName)
		}
	}
	check(1, "karate")
	publish(t, dir, "karate", 2, readFixture(t, "karate_seed1"))
	reload(t, r)
	check(2, "karate_seed1")
	if changes != 1 {
		t.Errorf("OnChange called %d times, want 1", changes)
	}
	reload(t, r) // nothing changed
	if changes != 1 {
		t.Errorf("OnChange called %d times after a no-op reload, want 1", changes)
	}

	// Same version, new content (renamed over): the new content serves.
	replaceFile(t, dir, "karate", 2, readFixture(t, "karate_seed2"))
	reload(t, r)
	check(2, "karate_seed2")

	// Unpublish 2: version 1 is loaded again.
	unpublish(t, dir, "karate", 2)
	reload(t, r)
	check(1, "karate")
	if _, _, ok := state(r, "karate", 2); ok {
		t.Error("removed version 2 still listed")
	}

	// A whole model appears and disappears.
	publish(t, dir, "cora", 1, readFixture(t, "cora"))
	reload(t, r)
	if got := r.Default(); got != "" {
		t.Errorf("Default() = %q with two models, want \"\"", got)
	}
	if err := os.RemoveAll(filepath.Join(dir, "cora")); err != nil {
		t.Fatal(err)
	}
	reload(t, r)
	if _, err := r.Acquire("cora", 0); kindOf(err) != gcn.KindNotFound {
		t.Errorf("Acquire(cora) after removal = %v, want NotFound", err)
	}
	if got := r.Default(); got != "karate" {
		t.Errorf("Default() = %q, want karate again", got)
	}
	if r.Resident("cora") != 0 || r.PeakResident("karate") > 2 {
		t.Errorf("cora sessions %d (want 0), karate peak %d (want <= 2)", r.Resident("cora"), r.PeakResident("karate"))
	}
	loaded, refused, unloaded := ev.counts()
	if loaded != 5 || refused != 0 || unloaded != 4 {
		t.Errorf("events %d loaded, %d refused, %d unloaded; want 5, 0, 4", loaded, refused, unloaded)
	}
}

func TestRefusesBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	good := readFixture(t, "karate")
	publish(t, dir, "karate", 1, good)
	cfg, ev, logs := testConfig(t, dir)
	r := open(t, cfg)

	bad := map[int]struct {
		data   []byte
		reason string
	}{
		2: {[]byte("definitely not a protobuf \xff\xff\xff\xff"), "not a loadable ONNX model"},
		3: {good[:len(good)/2], "not a loadable ONNX model"}, // truncated: a half copy that stayed so
		4: {readFixture(t, "bad_contract"), "input"},         // valid ONNX, wrong signature
		6: {nil, "not a loadable ONNX model"},                // empty
	}
	for v, b := range bad {
		publish(t, dir, "karate", v, b.data)
	}
	reload(t, r)
	reload(t, r) // refused files are not retried, nor logged again, until they change
	if got := servedVersion(t, r, "karate"); got != 1 {
		t.Errorf("serving version %d, want 1 while 2..6 are broken", got)
	}
	for v, b := range bad {
		st, reason, _ := state(r, "karate", int64(v))
		if st != modelrepo.StateFailed || !strings.Contains(reason, b.reason) {
			t.Errorf("version %d: %s %q, want FAILED with %q", v, st, reason, b.reason)
		}
	}
	if n := logs.count("model file refused"); n != 4 {
		t.Errorf("%d refusal log lines, want 4 (one per file)", n)
	}
	if _, refused, _ := ev.counts(); refused != 4 {
		t.Errorf("%d refusal events, want 4", refused)
	}
	for _, line := range logs.lines {
		if strings.Contains(line, "model file refused") && !strings.Contains(line, "model.onnx") {
			t.Errorf("refusal line does not name the file: %s", line)
		}
	}

	// The serving version's own file turns bad: the loaded copy keeps serving.
	replaceFile(t, dir, "karate", 1, good[:100])
	for v := 2; v <= 6; v++ {
		unpublish(t, dir, "karate", v)
	}
	reload(t, r)
	if got := servedVersion(t, r, "karate"); got != 1 {
		t.Errorf("serving %d, want 1", got)
	}
	st, reason, _ := state(r, "karate", 1)
	if st != modelrepo.StateReady || !strings.Contains(reason, "refused") {
		t.Errorf("version 1: %s %q, want READY with the refusal noted", st, reason)
	}
	// Fixed: the new content loads.
	replaceFile(t, dir, "karate", 1, readFixture(t, "karate_seed3"))
	reload(t, r)
	l, err := r.Acquire("karate", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := golden(t, fixture(t, "karate_seed3"), testGraph(34, 5)); l.SHA256 == "" || !slices.Equal(predict(t, l, testGraph(34, 5)), want) {
		t.Error("fixed version 1 does not serve the new file")
	}
	l.Release()
	if st, reason, _ := state(r, "karate", 1); st != modelrepo.StateReady || reason != "" {
		t.Errorf("version 1: %s %q, want READY", st, reason)
	}
}

func predict(t testing.TB, l *modelrepo.Lease, g gcn.Tensors) []float32 {
	t.Helper()
	p, err := l.Model.Predict(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	return p.Scores
}

func TestHalfWrittenFileWaits(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, ev, _ := testConfig(t, dir)
	cfg.MinFileAge = 300 * time.Millisecond
	r := open(t, cfg)

	// A plain, non-atomic copy in two halves, 100ms apart.
	data := readFixture(t, "karate_seed1")
	path := filepath.Join(dir, "karate", "2", modelrepo.ModelFileName)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	reload(t, r)
	if st, reason, _ := state(r, "karate", 2); st != modelrepo.StateLoading || !strings.Contains(reason, "waiting") {
		t.Errorf("half-written version 2: %s %q, want LOADING waiting", st, reason)
	}
	if got := servedVersion(t, r, "karate"); got != 1 {
		t.Errorf("serving %d while 2 is being written, want 1", got)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := f.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// No poll loop: the repository looks again when the file is old enough.
	eventually(t, 5*time.Second, "version 2 served", func() bool { return servedVersion(t, r, "karate") == 2 })
	if _, refused, _ := ev.counts(); refused != 0 {
		t.Errorf("%d refusals, want 0: the half-written file must not be tried", refused)
	}
}

func TestLeaseKeepsOldVersionAlive(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, ev, _ := testConfig(t, dir)
	r := open(t, cfg)
	g := testGraph(34, 8)
	want1 := golden(t, fixture(t, "karate"), g)

	old, err := r.Acquire("karate", 0)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, dir, "karate", 2, readFixture(t, "karate_seed1"))
	reload(t, r)
	if got := servedVersion(t, r, "karate"); got != 2 {
		t.Fatalf("serving %d, want 2", got)
	}
	if _, _, unloaded := ev.counts(); unloaded != 0 {
		t.Fatalf("version 1 unloaded while leased")
	}
	if got := predict(t, old, g); !slices.Equal(got, want1) {
		t.Error("the old lease no longer predicts with version 1")
	}
	st, reason, _ := state(r, "karate", 1)
	if st != modelrepo.StateUnavailable {
		t.Errorf("version 1 while draining: %s %q, want UNAVAILABLE", st, reason)
	}
	var inflight int64
	for _, m := range r.Models() {
		for _, v := range m.Versions {
			if v.Version == 1 {
				inflight = v.InFlight
			}
		}
	}
	if inflight != 1 {
		t.Errorf("version 1 in flight %d, want 1", inflight)
	}

	// A third version waits for version 1 to drain: at most two sessions.
	publish(t, dir, "karate", 3, readFixture(t, "karate_seed2"))
	reload(t, r)
	if got := servedVersion(t, r, "karate"); got != 2 {
		t.Errorf("serving %d while version 1 drains, want 2", got)
	}
	if st, reason, _ := state(r, "karate", 3); st != modelrepo.StateLoading || !strings.Contains(reason, "drain") {
		t.Errorf("version 3: %s %q, want LOADING waiting for the drain", st, reason)
	}
	if got := r.Resident("karate"); got != 2 {
		t.Errorf("%d karate sessions, want 2", got)
	}
	old.Release()
	// The unload runs on the repository's goroutine, not on Release's.
	// (>= 1: the drain's end then loads version 3, which unloads version 2.)
	eventually(t, 5*time.Second, "version 1 unloaded after its last lease", func() bool {
		_, _, unloaded := ev.counts()
		return unloaded >= 1
	})
	// The drain's end wakes the repository: version 3 loads without Reload.
	eventually(t, 5*time.Second, "version 3 served", func() bool { return servedVersion(t, r, "karate") == 3 })
	if got := r.PeakResident("karate"); got != 2 {
		t.Errorf("karate had %d sessions at once, want 2", got)
	}
	if _, err := old.Model.Predict(context.Background(), g); !errors.Is(err, gcn.ErrClosed) {
		t.Errorf("Predict on the released, unloaded version 1 = %v, want ErrClosed", err)
	}
}

func TestSingleFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "served.onnx")
	if err := os.WriteFile(path, readFixture(t, "karate"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, ev, _ := testConfig(t, "")
	cfg.Repository, cfg.ModelFile = "", path
	r := open(t, cfg)
	// model/karate.onnx says model_name gcn-karate, model_version 1.
	if r.Default() != "gcn-karate" || servedVersion(t, r, "") != 1 {
		t.Fatalf("Default() = %q, version %d; want gcn-karate, 1", r.Default(), servedVersion(t, r, ""))
	}
	old, err := r.Acquire("", 0)
	if err != nil {
		t.Fatal(err)
	}
	// karate_seed1 says model_name karate, model_version 2: the version
	// changes, the name stays.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, readFixture(t, "karate_seed1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	reload(t, r)
	l, err := r.Acquire("gcn-karate", 0)
	if err != nil || l.Version != 2 {
		t.Fatalf("after replacing the file: %v, %v; want version 2", l, err)
	}
	l.Release()
	if _, _, unloaded := ev.counts(); unloaded != 0 {
		t.Error("old session closed while leased")
	}
	old.Release()
	eventually(t, 5*time.Second, "old session closed after its lease", func() bool {
		_, _, unloaded := ev.counts()
		return unloaded == 1
	})

	// A corrupt replacement is refused; a removed file keeps serving.
	if err := os.WriteFile(tmp, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	reload(t, r)
	if got := servedVersion(t, r, ""); got != 2 {
		t.Errorf("serving %d after a corrupt replacement, want 2", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	reload(t, r)
	if got := servedVersion(t, r, ""); got != 2 {
		t.Errorf("serving %d after the file was removed, want 2", got)
	}
	if _, refused, _ := ev.counts(); refused != 1 {
		t.Errorf("%d refusals, want 1", refused)
	}

	// Without model_name metadata the name is the file name.
	cfg.ModelFile = fixture(t, "cora_random1")
	r2 := open(t, cfg)
	if r2.Default() != "cora" { // its metadata says cora
		t.Errorf("Default() = %q, want cora", r2.Default())
	}
	cfg.ModelFile = filepath.Join(dir, "nothing.onnx")
	if _, err := modelrepo.Open(cfg); err == nil {
		t.Error("Open of a missing model file succeeded")
	}
}

func TestPollLoopPicksUpVersions(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, _, _ := testConfig(t, dir)
	cfg.PollInterval = 20 * time.Millisecond
	r := open(t, cfg)
	publish(t, dir, "karate", 2, readFixture(t, "karate_seed1"))
	eventually(t, 5*time.Second, "version 2 served by polling", func() bool { return servedVersion(t, r, "karate") == 2 })
	unpublish(t, dir, "karate", 2)
	eventually(t, 5*time.Second, "version 1 served again", func() bool { return servedVersion(t, r, "karate") == 1 })
}

// TestConcurrentAcquireWhileReloading runs predictions on both models from
// several goroutines while versions come and go; run it with -race. Every
// answer must be the golden answer of the version its lease names.
func TestConcurrentAcquireWhileReloading(t *testing.T) {
	dir := t.TempDir()
	karate := []string{"karate", "karate_seed1", "karate_seed2", "karate_seed3"}
	cora := []string{"cora", "cora_random1"}
	kg, cg := testGraph(34, 16), testGraph(1433, 6)
	want := map[string][]float32{} // by SHA-256 of the file
	files := map[string][]byte{}
	for _, f := range append(slices.Clone(karate), cora...) {
		files[f] = readFixture(t, f)
		g := kg
		if strings.HasPrefix(f, "cora") {
			g = cg
		}
		want[sha(files[f])] = golden(t, fixture(t, f), g)
	}
	publish(t, dir, "karate", 1, files["karate"])
	publish(t, dir, "cora", 1, files["cora"])
	cfg, _, _ := testConfig(t, dir)
	cfg.DefaultModel = "karate"
	r := open(t, cfg)

	var stop atomic.Bool
	var requests, failures atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				name, g := "karate", kg
				if w%2 == 1 {
					name, g = "cora", cg
				}
				l, err := r.Acquire(name, 0)
				if err != nil {
					failures.Add(1)
					t.Errorf("Acquire(%s): %v", name, err)
					return
				}
				p, err := l.Model.Predict(context.Background(), g)
				l.Release()
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("%s v%d: %v", name, l.Version, err)
					return
				}
				if !slices.Equal(p.Scores, want[l.SHA256]) {
					failures.Add(1)
					t.Errorf("%s v%d (%s) answered scores of another version", name, l.Version, l.SHA256[:8])
					return
				}
			}
		}()
	}
	for i := range 24 {
		switch i % 4 {
		case 0, 1:
			publish(t, dir, "karate", i+2, files[karate[(i/2)%len(karate)]])
		case 2:
			publish(t, dir, "cora", i+2, files[cora[(i/4)%len(cora)]])
		case 3:
			unpublish(t, dir, "karate", i+1)
		}
		reload(t, r)
	}
	stop.Store(true)
	wg.Wait()
	if requests.Load() < 50 || failures.Load() != 0 {
		t.Errorf("%d requests, %d failures; want >= 50 and 0", requests.Load(), failures.Load())
	}
	for _, name := range []string{"karate", "cora"} {
		if got := r.PeakResident(name); got > 2 {
			t.Errorf("%s had %d sessions at once, want at most 2", name, got)
		}
	}
	t.Logf("%d requests during 24 repository changes", requests.Load())
}

// TestRemovedVersionServesUntilReplaced: removing the served version while
// the version to fall back to cannot load yet (an older session of the model
// still drains) keeps the removed one serving, so no request fails.
func TestRemovedVersionServesUntilReplaced(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, _, _ := testConfig(t, dir)
	r := open(t, cfg)
	v1, err := r.Acquire("karate", 0)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, dir, "karate", 2, readFixture(t, "karate_seed1"))
	reload(t, r) // 2 serves; 1 drains (leased)
	unpublish(t, dir, "karate", 2)
	reload(t, r) // 1 must load again, but waits for the drain
	if got := servedVersion(t, r, "karate"); got != 2 {
		t.Errorf("serving %d, want the removed 2 until 1 is back", got)
	}
	if st, reason, _ := state(r, "karate", 2); st != modelrepo.StateReady || !strings.Contains(reason, "removed") {
		t.Errorf("version 2: %s %q, want READY removed", st, reason)
	}
	v1.Release()
	eventually(t, 5*time.Second, "version 1 served again", func() bool { return servedVersion(t, r, "karate") == 1 })
	eventually(t, 5*time.Second, "version 2 gone", func() bool {
		_, _, ok := state(r, "karate", 2)
		return !ok && r.Resident("karate") == 1
	})
}

// TestCloseWithLeaseOutstanding: Close stops new leases at once; a session
// still leased closes on its last Release.
func TestCloseWithLeaseOutstanding(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	cfg, ev, _ := testConfig(t, dir)
	r, err := modelrepo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Acquire("", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Acquire("karate", 0); kindOf(err) != gcn.KindUnavailable {
		t.Errorf("Acquire after Close = %v, want Unavailable", err)
	}
	if err := r.Reload(context.Background()); kindOf(err) != gcn.KindUnavailable {
		t.Errorf("Reload after Close = %v, want Unavailable", err)
	}
	predict(t, l, testGraph(34, 4)) // still works
	if _, _, unloaded := ev.counts(); unloaded != 0 {
		t.Error("leased session closed by Close")
	}
	l.Release()
	eventually(t, 5*time.Second, "session closed after the last Release after Close", func() bool {
		_, _, unloaded := ev.counts()
		return unloaded == 1
	})
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// BenchmarkAcquireRelease is the repository's cost per request: one lease
// taken and released, from parallel goroutines.
func BenchmarkAcquireRelease(b *testing.B) {
	dir := b.TempDir()
	publish(b, dir, "karate", 1, readFixture(b, "karate"))
	cfg, _, _ := testConfig(b, dir)
	r := open(b, cfg)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := r.Acquire("karate", 0)
			if err != nil {
				b.Error(err)
				return
			}
			l.Release()
		}
	})
}

// TestOpenWaitsForSettlingFiles: a version and a policy file written just
// before Open are waited for, not skipped.
func TestOpenWaitsForSettlingFiles(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "karate", 1, readFixture(t, "karate"))
	publish(t, dir, "karate", 2, readFixture(t, "karate_seed1"))
	if err := os.WriteFile(filepath.Join(dir, "karate", modelrepo.PolicyFileName), []byte("all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, ev, _ := testConfig(t, dir)
	cfg.MinFileAge = 200 * time.Millisecond
	start := time.Now()
	r := open(t, cfg)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Open returned after %s, before the files settled", d)
	}
	for _, v := range []int64{1, 2} {
		if st, reason, _ := state(r, "karate", v); st != modelrepo.StateReady {
			t.Errorf("version %d: %s %q, want READY under the policy file's all", v, st, reason)
		}
	}
	if loaded, _, unloaded := ev.counts(); loaded != 2 || unloaded != 0 {
		t.Errorf("%d loads, %d unloads; want 2, 0 (no detour through the server policy)", loaded, unloaded)
	}
}
