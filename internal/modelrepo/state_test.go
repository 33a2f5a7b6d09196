package modelrepo

// The version state machine on a fake loader: no ONNX Runtime, each test in
// milliseconds (ollama's scheduler tests run on fakes the same way). The real
// loader is covered by repository_test.go.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

// fakeSession is a loaded fake model; Close blocks while gate is open
// (not nil and not closed).
type fakeSession struct {
	content string
	gate    chan struct{}
	closed  chan struct{}
}

// Info reads "name@version" content as the model's metadata (single-file
// mode names and numbers the model from it).
func (s *fakeSession) Info() gcn.Info {
	name, version, _ := strings.Cut(s.content, "@")
	return gcn.Info{Name: name, Version: version}
}

func (s *fakeSession) Close() error {
	if s.gate != nil {
		<-s.gate
	}
	close(s.closed)
	return nil
}

// fakeLoader loads any content but "broken" (refused) and counts loads.
type fakeLoader struct {
	mu       sync.Mutex
	loads    map[string]int
	sessions []*fakeSession
	gate     chan struct{} // handed to every session
}

func (f *fakeLoader) load(_ context.Context, data []byte, _ []gcn.Option) (session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loads == nil {
		f.loads = make(map[string]int)
	}
	f.loads[string(data)]++
	if string(data) == "broken" {
		return nil, errors.New("not an ONNX model (fake)")
	}
	s := &fakeSession{content: string(data), gate: f.gate, closed: make(chan struct{})}
	f.sessions = append(f.sessions, s)
	return s, nil
}

func (f *fakeLoader) count(content string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads[content]
}

// writeVersion writes dir/name/version/model.onnx, old enough to load.
func writeVersion(t *testing.T, dir, name string, version int, content string) string {
	t.Helper()
	path := filepath.Join(dir, name, strconv.Itoa(version), ModelFileName)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	return path
}

// openFake opens dir on f, failing the test if Open takes over 5s (a scan
// blocked on a file).
func openFake(t *testing.T, dir string, f *fakeLoader) *Repository {
	t.Helper()
	cfg := Config{Repository: dir, MinFileAge: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	type opened struct {
		r   *Repository
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		r, err := open(cfg, f.load)
		ch <- opened{r, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			t.Fatalf("open: %v", o.err)
		}
		t.Cleanup(func() {
			if err := o.r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return o.r
	case <-time.After(5 * time.Second):
		t.Fatal("open still running after 5s: the scan is blocked")
		return nil
	}
}

// reloadWithin reloads r, failing the test if it takes over 5s.
func reloadWithin(t *testing.T, r *Repository) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
}

func versionState(r *Repository, name string, version int64) (VersionState, bool) {
	for _, m := range r.Models() {
		if m.Name != name {
			continue
		}
		for _, v := range m.Versions {
			if v.Version == version {
				return v, true
			}
		}
	}
	return VersionState{}, false
}

func servedOf(t *testing.T, r *Repository, name string) int64 {
	t.Helper()
	l, err := r.Acquire(name, 0)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", name, err)
	}
	defer l.Release()
	return l.Version
}

// TestFakeSwapDrainsOldVersionOffTheRequestPath: a new version takes over;
// the old one serves its lease on and is closed after the last Release, on
// the repository's goroutine: Release returns while the close still runs.
func TestFakeSwapDrainsOldVersionOffTheRequestPath(t *testing.T) {
	dir := t.TempDir()
	gate := make(chan struct{})
	f := &fakeLoader{gate: gate}
	writeVersion(t, dir, "m", 1, "one")
	r := openFake(t, dir, f)
	lease, err := r.Acquire("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	writeVersion(t, dir, "m", 2, "two")
	reloadWithin(t, r)
	if got := servedOf(t, r, "m"); got != 2 {
		t.Fatalf("serving %d, want 2", got)
	}
	if v, _ := versionState(r, "m", 1); v.State != StateUnavailable || v.InFlight != 1 {
		t.Errorf("version 1 while leased: %s in flight %d, want UNAVAILABLE with 1", v.State, v.InFlight)
	}

	released := make(chan struct{})
	go func() {
		lease.Release() // the session's Close blocks until gate closes
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		close(gate)
		t.Fatal("Release waited for the session to close: the unload runs on the request's goroutine")
	}
	close(gate)
	select {
	case <-f.sessions[0].closed:
	case <-time.After(5 * time.Second):
		t.Fatal("version 1 not closed 5s after its last lease")
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Resident("m") != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := r.Resident("m"); got != 1 {
		t.Errorf("%d sessions resident after the drain, want 1", got)
	}
}

// TestFakeRefusedVersionKeepsOldServing: a version the loader refuses is
// FAILED with the reason, is not retried until the file changes, and the
// version before it keeps serving.
func TestFakeRefusedVersionKeepsOldServing(t *testing.T) {
	dir := t.TempDir()
	f := &fakeLoader{}
	writeVersion(t, dir, "m", 1, "one")
	r := openFake(t, dir, f)
	writeVersion(t, dir, "m", 2, "broken")
	reloadWithin(t, r)
	reloadWithin(t, r)
	if got := servedOf(t, r, "m"); got != 1 {
		t.Errorf("serving %d, want 1", got)
	}
	if v, _ := versionState(r, "m", 2); v.State != StateFailed || !strings.Contains(v.Reason, "not an ONNX model") {
		t.Errorf("version 2: %s %q, want FAILED naming the loader's error", v.State, v.Reason)
	}
	if n := f.count("broken"); n != 1 {
		t.Errorf("refused file loaded %d times over two reloads, want 1 (not retried until it changes)", n)
	}
	writeVersion(t, dir, "m", 2, "fixed")
	reloadWithin(t, r)
	if got := servedOf(t, r, "m"); got != 2 {
		t.Errorf("serving %d after the fix, want 2", got)
	}
}

// TestFakeAtMostOneExtraSession: while an old version drains, a newer one
// waits (LOADING), so at most the served versions plus one are resident.
func TestFakeAtMostOneExtraSession(t *testing.T) {
	dir := t.TempDir()
	f := &fakeLoader{}
	writeVersion(t, dir, "m", 1, "one")
	r := openFake(t, dir, f)
	lease, err := r.Acquire("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	writeVersion(t, dir, "m", 2, "two")
	reloadWithin(t, r)
	writeVersion(t, dir, "m", 3, "three")
	reloadWithin(t, r)
	if v, _ := versionState(r, "m", 3); v.State != StateLoading || !strings.Contains(v.Reason, "drain") {
		t.Errorf("version 3: %s %q, want LOADING waiting for the drain", v.State, v.Reason)
	}
	if got := r.PeakResident("m"); got != 2 {
		t.Errorf("peak %d sessions, want 2", got)
	}
	lease.Release()
	deadline := time.Now().Add(5 * time.Second)
	for servedOf(t, r, "m") != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := servedOf(t, r, "m"); got != 3 {
		t.Errorf("serving %d after the drain, want 3 (the drain's end wakes the loop)", got)
	}
	if got := r.PeakResident("m"); got != 2 {
		t.Errorf("peak %d sessions, want 2", got)
	}
}

// TestHostileFilesAreRefusedUnopened: files that are not regular (a FIFO, a
// device, a directory, symlinks to them) or too big are refused with the
// reason, without being opened, so a scan never blocks or reads forever;
// the model's other version keeps serving; a symlink to a regular file is
// followed.
func TestHostileFilesAreRefusedUnopened(t *testing.T) {
	dir := t.TempDir()
	f := &fakeLoader{}
	writeVersion(t, dir, "m", 1, "one")
	mkfifo := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version := func(v int) string { return filepath.Join(dir, "m", strconv.Itoa(v), ModelFileName) }
	mkfifo(version(2))
	if err := os.MkdirAll(filepath.Dir(version(3)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", version(3)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(version(4), 0o755); err != nil { // model.onnx is a directory
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(version(5)), 0o755); err != nil {
		t.Fatal(err)
	}
	big, err := os.Create(version(5))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(3 << 30); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	big.Close()
	mkfifo(filepath.Join(dir, "m", PolicyFileName))
	// A second model reached through a symlink to a regular file.
	target := filepath.Join(t.TempDir(), "real.onnx")
	if err := os.WriteFile(target, []byte("linked"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(target, old, old)
	if err := os.MkdirAll(filepath.Join(dir, "linked", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "linked", "1", ModelFileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "linked", PolicyFileName)); err != nil {
		t.Fatal(err)
	}

	r := openFake(t, dir, f)
	reloadWithin(t, r) // a rescan finishes too, and refuses nothing twice
	if got := servedOf(t, r, "m"); got != 1 {
		t.Errorf("m serving %d, want 1", got)
	}
	if got := servedOf(t, r, "linked"); got != 1 {
		t.Errorf("linked serving %d, want 1 (a symlink to a regular file is followed)", got)
	}
	for _, tt := range []struct {
		version int64
		want    string
	}{
		{2, "a named pipe (FIFO), not a regular file"},
		{3, "a symlink to a character device, not a regular file"},
		{4, "a directory, not a regular file"},
		{5, "3221225472 bytes, over the 2147483647-byte limit"},
	} {
		v, ok := versionState(r, "m", tt.version)
		if !ok || v.State != StateFailed || !strings.Contains(v.Reason, tt.want) {
			t.Errorf("version %d: %s %q (listed %v), want FAILED with %q", tt.version, v.State, v.Reason, ok, tt.want)
		}
	}
	v, _ := versionState(r, "m", 1)
	if !strings.Contains(v.Reason, "version_policy ignored (a named pipe (FIFO), not a regular file)") {
		t.Errorf("version 1's reason %q does not say the FIFO version_policy is ignored", v.Reason)
	}
	v, _ = versionState(r, "linked", 1)
	if !strings.Contains(v.Reason, "version_policy ignored (a symlink to a character device") {
		t.Errorf("linked version 1's reason %q does not say the /dev/zero version_policy is ignored", v.Reason)
	}
	for _, content := range []string{"", "broken"} {
		if n := f.count(content); n != 0 {
			t.Errorf("loader called %d times with %q: a refused file was read", n, content)
		}
	}
}

// TestPolicyFileSizeLimit: a version_policy over MaxPolicyBytes is refused
// (the policy in force stays) without being read whole.
func TestPolicyFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "m", 1, "one")
	writeVersion(t, dir, "m", 2, "two")
	policy := filepath.Join(dir, "m", PolicyFileName)
	if err := os.WriteFile(policy, []byte("specific:1\n"+strings.Repeat("#", MaxPolicyBytes)), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(policy, old, old)
	r := openFake(t, dir, &fakeLoader{})
	if got := servedOf(t, r, "m"); got != 2 {
		t.Errorf("serving %d, want 2 (the oversized policy file ignored: latest)", got)
	}
	if v, _ := versionState(r, "m", 2); !strings.Contains(v.Reason, "over the 4096-byte limit") {
		t.Errorf("reason %q does not give the policy file's limit", v.Reason)
	}
}

// TestReloadHonoursContextWhileAScanRuns: a Reload (SIGHUP) waiting for a
// scan stuck in I/O gives up when its context ends, and requests never wait.
func TestReloadHonoursContextWhileAScanRuns(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "m", 1, "one")
	r := openFake(t, dir, &fakeLoader{})
	r.reconcileSem <- struct{}{} // a scan stuck in I/O
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Reload(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reload while a scan is stuck = %v, want DeadlineExceeded", err)
	}
	if got := servedOf(t, r, "m"); got != 1 {
		t.Errorf("serving %d while a scan is stuck, want 1 (requests never wait for scans)", got)
	}
	<-r.reconcileSem
}

// TestFakeSingleFileIsAOneModelRepository: single-file mode runs the
// repository's state machine: named and numbered by the metadata, a changed
// file swaps in whatever its version, a refused replacement or a removed
// file leaves the loaded copy serving (with the reason), a FIFO put in its
// place is refused unopened.
func TestFakeSingleFileIsAOneModelRepository(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "served.onnx")
	put := func(content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		os.Chtimes(tmp, old, old)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	put("gcn-karate@1")
	f := &fakeLoader{}
	cfg := Config{ModelFile: path, MinFileAge: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r, err := open(cfg, f.load)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Default() != "gcn-karate" || servedOf(t, r, "") != 1 {
		t.Fatalf("Default() %q version %d, want gcn-karate 1", r.Default(), servedOf(t, r, ""))
	}
	put("other-name@5")
	reloadWithin(t, r)
	if got := servedOf(t, r, "gcn-karate"); got != 5 {
		t.Errorf("after the change serving %d, want 5 (the name stays, the version follows)", got)
	}
	put("broken")
	reloadWithin(t, r)
	if v, _ := versionState(r, "gcn-karate", 5); v.State != StateReady || !strings.Contains(v.Reason, "not an ONNX model") {
		t.Errorf("after a broken replacement: %s %q, want READY saying the new content was refused", v.State, v.Reason)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	reloadWithin(t, r)
	if v, _ := versionState(r, "gcn-karate", 5); v.State != StateReady || !strings.Contains(v.Reason, "file gone") {
		t.Errorf("after removal: %s %q, want READY, file gone", v.State, v.Reason)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	reloadWithin(t, r)
	if v, _ := versionState(r, "gcn-karate", 5); v.State != StateReady || !strings.Contains(v.Reason, "a named pipe (FIFO)") {
		t.Errorf("a FIFO in its place: %s %q, want READY, the FIFO refused", v.State, v.Reason)
	}
	if got := servedOf(t, r, ""); got != 5 {
		t.Errorf("serving %d, want 5 throughout", got)
	}
}

// TestCloseEndsItsGoroutines: after Close (no lease out) the poll loop and
// the unloader have ended; with a lease out, the unloader ends after the
// last Release has closed the session.
func TestCloseEndsItsGoroutines(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "m", 1, "one")
	cfg := Config{Repository: dir, MinFileAge: -1, PollInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f := &fakeLoader{}
	r, err := open(cfg, f.load)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := r.Acquire("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	default:
		t.Error("the poll loop still runs after Close")
	}
	select {
	case <-r.unloaderDone:
		t.Fatal("the unloader ended with a session still leased")
	default:
	}
	lease.Release()
	select {
	case <-r.unloaderDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the unloader still runs 5s after the last Release")
	}
	select {
	case <-f.sessions[0].closed:
	default:
		t.Error("the leased session was not closed")
	}
}
