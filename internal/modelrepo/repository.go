// Package modelrepo serves the versions of one or more models from a model
// repository and swaps them while requests run.
//
// # Layout
//
// A repository is Triton's layout: a directory per model, in it a directory
// per version (a positive integer, no leading zeros) holding model.onnx, and
// optionally a version_policy file:
//
//	repo/
//	  karate/
//	    version_policy      optional: "latest:2" (syntax of Policy)
//	    1/model.onnx
//	    2/model.onnx
//	  cora/
//	    7/model.onnx
//
// A model's name is its directory name; names and entries starting with "."
// are ignored (use them to stage a publish). Single-file mode (Config.ModelFile)
// serves one file as one model named by its model_name metadata, else the file
// name without ".onnx", at the version in its integer model_version metadata,
// else 1.
//
// # Reload
//
// Reload (SIGHUP) and the poll loop (Config.PollInterval) rescan the
// repository. A new version, or a version whose file content changed (its
// SHA-256), is read, opened by gcn (which checks the model contract) and warmed
// up with one prediction before it takes traffic. Requests that hold a Lease
// finish on the version they started on; a replaced or removed version's
// session is closed when its last lease is released. Versions of one model load
// one at a time, and a model does not load a new version while an old one is
// still draining, so at most the served versions plus one are resident.
//
// A file that cannot be read, is not an ONNX model, breaks the contract or
// fails its warm-up is refused: one log line naming the file and the reason,
// one Events.VersionRefused call, state FAILED; whatever was serving keeps
// serving. The file is not retried until it changes (size, mtime or inode).
//
// # Publishing atomically
//
// A file modified less than Config.MinFileAge ago (default 1s), or that
// changes while it is read, is not loaded yet (state LOADING); it is looked at
// again when it is old enough. That keeps a plain "cp" from being loaded half
// copied, unless the writer stalls for longer than MinFileAge. To publish
// safely, make the complete file appear at once:
//
//	cp model.onnx repo/karate/.3.tmp/model.onnx && mv repo/karate/.3.tmp repo/karate/3
//	cp model.onnx repo/karate/3/.model.onnx.tmp && mv repo/karate/3/.model.onnx.tmp repo/karate/3/model.onnx
//
// (rename within one file system). To unpublish, remove or rename away the
// version directory.
package modelrepo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/memtrim"
)

// Defaults for Config's zero values.
const (
	// DefaultMinFileAge is how long a model file must stay unchanged before
	// it is loaded.
	DefaultMinFileAge = time.Second
	// DefaultPollInterval is the poll interval a server should default to
	// (--repository-poll-interval); a zero Config.PollInterval means off.
	DefaultPollInterval = 10 * time.Second
	// warmupTimeout bounds the warm-up prediction of a new version.
	warmupTimeout = 30 * time.Second
)

// Config says what to serve. Exactly one of Repository and ModelFile is set.
type Config struct {
	// Repository is the model repository directory (layout in the package
	// documentation).
	Repository string
	// ModelFile is one model file, served as the only model (single-file mode).
	ModelFile string
	// DefaultModel is the model a request naming no model gets. Default "":
	// the only model when there is exactly one, else none.
	DefaultModel string
	// Policy is the server-wide version policy; a model's version_policy file
	// overrides it. Default (zero value) "latest".
	Policy Policy
	// PollInterval is how often the repository is rescanned. 0 (the zero
	// value) turns polling off: only Reload rescans.
	PollInterval time.Duration
	// MinFileAge is how long a file must stay unchanged before it is loaded.
	// 0 means DefaultMinFileAge (1s); a negative value loads at once.
	MinFileAge time.Duration
	// Options are passed to every gcn.OpenBytes.
	Options []gcn.Option
	// Logger receives one line per load, refusal and unload. Default
	// slog.Default().
	Logger *slog.Logger
	// Events, when set, is told about loads, refusals and unloads (metrics).
	Events Events
	// OnChange, when set, is called after the set of served versions changed
	// (health). It runs on the reloading goroutine after its locks are
	// released; it may call Models and Default, not Reload or Close.
	OnChange func()
}

// Events receives the repository's lifecycle events. Calls come from the
// reloading goroutine, or from Release for an unload after drain; they must
// not block.
type Events interface {
	// VersionLoaded: a version passed its checks and warm-up and now serves.
	VersionLoaded(name string, version int64, took time.Duration)
	// VersionRefused: a file was refused (corrupt, breaks the contract, ...).
	// version is 0 for a model's version_policy file, and for a single
	// model file that could not be read before its version was known.
	VersionRefused(name string, version int64, path string, reason error)
	// VersionUnloaded: a version's session closed after its last lease.
	VersionUnloaded(name string, version int64)
}

// State is a version's lifecycle state.
type State int

// The states of a version, as Triton and KServe name them.
const (
	// StateUnavailable: on disk but not served (not selected by the policy,
	// removed and draining, or the repository closed).
	StateUnavailable State = iota
	// StateLoading: being loaded, or waiting (file still changing, or an
	// older session of the model still draining).
	StateLoading
	// StateReady: serving requests.
	StateReady
	// StateFailed: its file was refused; Reason says why.
	StateFailed
)

// String returns "UNAVAILABLE", "LOADING", "READY" or "FAILED".
func (s State) String() string {
	switch s {
	case StateLoading:
		return "LOADING"
	case StateReady:
		return "READY"
	case StateFailed:
		return "FAILED"
	}
	return "UNAVAILABLE"
}

// ModelState describes one model.
type ModelState struct {
	Name string
	// Policy is the effective version policy.
	Policy string
	// Versions are ascending by version.
	Versions []VersionState
}

// Ready reports whether any version of the model is served.
func (m ModelState) Ready() bool {
	for _, v := range m.Versions {
		if v.State == StateReady {
			return true
		}
	}
	return false
}

// VersionState describes one version of a model.
type VersionState struct {
	Version int64
	State   State
	// Reason explains a state other than READY, or a READY version whose new
	// file was refused. Empty otherwise.
	Reason string
	// Path is the model file.
	Path string
	// SHA256 is the digest of the loaded content ("" when nothing is loaded).
	SHA256 string
	// InFlight counts the leases held on this version's sessions.
	InFlight int64
}

// Lease is a hold on one loaded version: its session stays open until
// Release. A Lease is used by one request; Release is idempotent.
type Lease struct {
	Name    string
	Version int64
	Model   *gcn.Model
	// Path is the model file the session was loaded from; SHA256 its digest.
	Path, SHA256 string

	inst     *instance
	released atomic.Bool
}

// Release ends the lease. The last release of a replaced or removed version
// closes its session.
func (l *Lease) Release() {
	if l.released.CompareAndSwap(false, true) {
		l.inst.unref()
	}
}

// Repository serves the models of a Config. Acquire is safe for concurrent
// use with everything, and never waits for a load.
type Repository struct {
	cfg Config
	log *slog.Logger

	// routes is what Acquire reads: the served versions, swapped whole after
	// every change. nil after Close.
	routes atomic.Pointer[routes]

	// reconcileMu serialises scans and is held across loads. The model
	// entries are written only under reconcileMu, and also under mu so that
	// Models can read them.
	reconcileMu sync.Mutex
	closed      bool              // guarded by reconcileMu
	skipped     map[string]string // paths already logged as skipped; reconcileMu
	fileName    string            // single-file mode: the model's name; reconcileMu

	mu       sync.Mutex
	models   map[string]*modelEntry // guarded by mu (written also under reconcileMu)
	draining map[*instance]struct{} // retired sessions with leases; mu
	resident map[string]int         // open sessions per model; mu
	peak     map[string]int         // highest resident count per model; mu

	// retireAfterPublish are sessions the next publish stops routing to and
	// releases the routes' reference on; guarded by mu.
	retireAfterPublish []*instance

	kick   chan struct{} // wakes the loop (drain done, pending file due)
	cancel context.CancelFunc
	done   chan struct{}
	timer  *time.Timer // pending-file wake-up; guarded by mu
}

// routes is one immutable view of the served versions.
type routes struct {
	served map[string][]*instance // by model; ascending version
	names  []string               // every known model, sorted
	def    string
}

// modelEntry is the reconciler's view of one model.
type modelEntry struct {
	name      string
	policy    Policy
	policyMsg string // why the version_policy file was not used; "" when fine
	// policyPending: the version_policy file changed too recently to be read.
	policyPending bool
	versions      map[int64]*versionEntry
}

// versionEntry is the reconciler's view of one version.
type versionEntry struct {
	version int64
	path    string
	onDisk  bool
	disk    fileStat // the file as the last scan saw it

	live     *instance // the loaded session, or nil
	liveStat fileStat  // the file state live was loaded from
	served   bool      // live is in routes

	failed     *fileStat // the file state that was refused; nil when none
	failReason string

	state  State
	reason string
}

// instance is one open session. refs counts the routes' hold (1 while
// served) plus one per lease; the session closes when it reaches 0, and a
// count at 0 never rises again.
type instance struct {
	repo    *Repository
	name    string
	version int64
	path    string
	sha256  string
	model   *gcn.Model
	refs    atomic.Int64
}

// tryRef takes a lease reference unless the instance already closed.
func (in *instance) tryRef() bool {
	for {
		n := in.refs.Load()
		if n <= 0 {
			return false
		}
		if in.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (in *instance) unref() {
	if in.refs.Add(-1) == 0 {
		if err := in.repo.closeInstance(in); err != nil {
			in.repo.log.Error("close model session", "model", in.name, "version", in.version, "err", err)
		}
	}
}

// Open scans the repository (or the model file), loads and warms up what the
// version policies select, and starts the poll loop. Broken files are refused
// and reported, not fatal. Open fails when the repository cannot be read,
// when no version of any model can be served, or when Config.DefaultModel
// names a model that has no served version. Files still changing at start
// are waited for (a few times MinFileAge).
func Open(cfg Config) (*Repository, error) {
	if (cfg.Repository == "") == (cfg.ModelFile == "") {
		return nil, errors.New("modelrepo: set exactly one of a model repository and a model file")
	}
	if cfg.MinFileAge == 0 {
		cfg.MinFileAge = DefaultMinFileAge
	}
	cfg.MinFileAge = max(cfg.MinFileAge, 0)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	memtrim.LimitArenas() // before the first session: see package memtrim
	r := &Repository{
		cfg:      cfg,
		log:      cfg.Logger,
		skipped:  make(map[string]string),
		models:   make(map[string]*modelEntry),
		draining: make(map[*instance]struct{}),
		resident: make(map[string]int),
		peak:     make(map[string]int),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	r.routes.Store(&routes{served: map[string][]*instance{}})

	ctx := context.Background()
	start := time.Now()
	for {
		// Not Reload: OnChange is for changes after Open returned.
		if _, err := r.reconcile(ctx); err != nil {
			return nil, errors.Join(err, r.Close())
		}
		if !r.hasPending() || time.Since(start) > 3*cfg.MinFileAge+time.Second {
			break
		}
		time.Sleep(cfg.MinFileAge/4 + 10*time.Millisecond)
	}
	if err := r.checkServable(); err != nil {
		return nil, errors.Join(err, r.Close())
	}

	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.loop(loopCtx)
	return r, nil
}

func (r *Repository) checkServable() error {
	rt := r.routes.Load()
	if def := r.cfg.DefaultModel; def != "" && len(rt.served[def]) == 0 {
		return fmt.Errorf("modelrepo: default model %q has no servable version (models: %s)", def, r.describeAll())
	}
	for _, vs := range rt.served {
		if len(vs) > 0 {
			return nil
		}
	}
	where := r.cfg.Repository
	if where == "" {
		where = r.cfg.ModelFile
	}
	return fmt.Errorf("modelrepo: nothing to serve in %s (models: %s)", where, r.describeAll())
}

// describeAll lists every model and its versions' states, for a startup error.
func (r *Repository) describeAll() string {
	var parts []string
	for _, m := range r.Models() {
		var vs []string
		for _, v := range m.Versions {
			s := fmt.Sprintf("%d %s", v.Version, v.State)
			if v.Reason != "" {
				s += ": " + v.Reason
			}
			vs = append(vs, s)
		}
		parts = append(parts, fmt.Sprintf("%s [%s]", m.Name, strings.Join(vs, "; ")))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (r *Repository) hasPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.models {
		if m.policyPending {
			return true
		}
		for _, v := range m.versions {
			if v.state == StateLoading {
				return true
			}
		}
	}
	return false
}

// loop rescans on every tick and whenever a drain ends or a waiting file
// becomes old enough.
func (r *Repository) loop(ctx context.Context) {
	defer close(r.done)
	var tick <-chan time.Time
	if r.cfg.PollInterval > 0 {
		t := time.NewTicker(r.cfg.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-r.kick:
		}
		if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("model repository rescan failed; serving what was loaded", "err", err)
		}
	}
}

func (r *Repository) nudge() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Default returns the default model's name: Config.DefaultModel, else the
// only model when the repository holds exactly one, else "".
func (r *Repository) Default() string {
	if rt := r.routes.Load(); rt != nil {
		return rt.def
	}
	return r.cfg.DefaultModel
}

// Acquire returns a lease on a served version of model name ("" for the
// default model); version 0 means the highest served version. An unknown
// model or version is a gcn.KindNotFound error naming what was asked and what
// is served; a known model with no served version is gcn.KindUnavailable.
func (r *Repository) Acquire(name string, version int64) (*Lease, error) {
	for {
		rt := r.routes.Load()
		if rt == nil {
			return nil, gcn.Errorf(gcn.KindUnavailable, "model repository is closed")
		}
		in, err := rt.lookup(name, version)
		if err != nil {
			return nil, err
		}
		if in.tryRef() {
			return &Lease{Name: in.name, Version: in.version, Model: in.model, Path: in.path, SHA256: in.sha256, inst: in}, nil
		}
		// Retired after we loaded the routes: the routes now in place no
		// longer hold it.
	}
}

func (rt *routes) lookup(name string, version int64) (*instance, error) {
	if name == "" {
		if rt.def == "" {
			return nil, gcn.Errorf(gcn.KindNotFound, "no model named and no default model; models: %s", listOrNone(rt.names))
		}
		name = rt.def
	}
	vs, ok := rt.served[name]
	if !ok {
		if _, known := slices.BinarySearch(rt.names, name); !known {
			return nil, gcn.Errorf(gcn.KindNotFound, "model %q not found; models: %s", name, listOrNone(rt.names))
		}
	}
	if len(vs) == 0 {
		return nil, gcn.Errorf(gcn.KindUnavailable, "model %q has no served version", name)
	}
	if version == 0 {
		return vs[len(vs)-1], nil
	}
	i, found := slices.BinarySearchFunc(vs, version, func(in *instance, v int64) int {
		return cmpInt64(in.version, v)
	})
	if !found {
		served := make([]string, len(vs))
		for j, in := range vs {
			served[j] = strconv.FormatInt(in.version, 10)
		}
		return nil, gcn.Errorf(gcn.KindNotFound, "model %q has no served version %d; served versions: %s", name, version, strings.Join(served, ", "))
	}
	return vs[i], nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Models describes every model and every version it knows, sorted by name
// and version, including versions that failed, wait or drain.
func (r *Repository) Models() []ModelState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ModelState, 0, len(r.models))
	for _, m := range r.models {
		ms := ModelState{Name: m.name, Policy: m.policy.String()}
		seen := make(map[int64]bool)
		for _, v := range m.versions {
			vs := VersionState{Version: v.version, State: v.state, Reason: v.reason, Path: v.path}
			if v.live != nil {
				vs.SHA256 = v.live.sha256
				vs.InFlight = max(v.live.refs.Load()-1, 0)
			}
			seen[v.version] = true
			ms.Versions = append(ms.Versions, vs)
		}
		for in := range r.draining {
			if in.name != m.name {
				continue
			}
			if !seen[in.version] {
				seen[in.version] = true
				ms.Versions = append(ms.Versions, VersionState{Version: in.version, State: StateUnavailable,
					Reason: "removed; unloading after its last request", Path: in.path, SHA256: in.sha256})
			}
			for i := range ms.Versions {
				if ms.Versions[i].Version == in.version {
					ms.Versions[i].InFlight += max(in.refs.Load(), 0)
				}
			}
		}
		slices.SortFunc(ms.Versions, func(a, b VersionState) int { return cmpInt64(a.Version, b.Version) })
		out = append(out, ms)
	}
	slices.SortFunc(out, func(a, b ModelState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Reload rescans the repository now and loads, swaps and unloads what
// changed, returning when done. It fails only when the repository directory
// cannot be read; refused files are logged and reported, not returned.
func (r *Repository) Reload(ctx context.Context) error {
	changed, err := r.reconcile(ctx)
	if changed && r.cfg.OnChange != nil {
		r.cfg.OnChange()
	}
	return err
}

func (r *Repository) reconcile(ctx context.Context) (changed bool, err error) {
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	if r.closed {
		return false, gcn.Errorf(gcn.KindUnavailable, "model repository is closed")
	}
	before := r.routes.Load().signature()
	now := time.Now()
	var due time.Time
	if r.cfg.ModelFile != "" {
		due = r.reconcileFile(ctx, now)
	} else {
		disk, skipped, err := scanRepository(r.cfg.Repository)
		if err != nil {
			return false, err
		}
		for path, why := range skipped {
			if r.skipped[path] != why {
				r.log.Info("model repository: ignoring entry", "path", path, "reason", why)
			}
		}
		r.skipped = skipped
		names := slices.Sorted(maps.Keys(disk))
		r.mu.Lock()
		for name := range r.models {
			if _, ok := disk[name]; !ok {
				names = append(names, name) // removed: unload its versions
			}
		}
		r.mu.Unlock()
		for _, name := range names {
			if d := r.reconcileModel(ctx, name, disk[name], now); !d.IsZero() && (due.IsZero() || d.Before(due)) {
				due = d
			}
		}
	}
	r.publish()
	r.schedule(due)
	return r.routes.Load().signature() != before, nil
}

// signature identifies the served set, to tell whether a reload changed it.
func (rt *routes) signature() string {
	var b strings.Builder
	b.WriteString(rt.def)
	for _, name := range slices.Sorted(maps.Keys(rt.served)) {
		fmt.Fprintf(&b, "|%s", name)
		for _, in := range rt.served[name] {
			fmt.Fprintf(&b, ":%d@%p", in.version, in)
		}
	}
	return b.String()
}

// schedule wakes the loop at due, when a waiting file becomes old enough.
func (r *Repository) schedule(due time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if !due.IsZero() {
		r.timer = time.AfterFunc(time.Until(due)+5*time.Millisecond, r.nudge)
	}
}

// reconcileModel brings one model in line with what is on disk (d nil: its
// directory is gone). It returns when a waiting file is due ("" if none).
func (r *Repository) reconcileModel(ctx context.Context, name string, d *diskModel, now time.Time) (due time.Time) {
	r.mu.Lock()
	e := r.models[name]
	if e == nil {
		e = &modelEntry{name: name, policy: r.cfg.Policy, versions: make(map[int64]*versionEntry)}
		r.models[name] = e
	}
	gone := d == nil
	if gone {
		d = &diskModel{}
	}
	for v, dv := range d.versions {
		ve := e.versions[v]
		if ve == nil {
			ve = &versionEntry{version: v}
			e.versions[v] = ve
		}
		ve.onDisk, ve.path, ve.disk = true, dv.path, dv.stat
	}
	if !d.partial {
		for v, ve := range e.versions {
			if _, ok := d.versions[v]; !ok {
				ve.onDisk = false
			}
		}
	}
	e.policyPending = d.hasPolicy && now.Sub(d.policyMtime) < r.cfg.MinFileAge
	if e.policyPending {
		// Being written, maybe: keep the policy in force until it settles.
		due = d.policyMtime.Add(r.cfg.MinFileAge)
	} else {
		r.updatePolicy(e, d)
	}
	r.mu.Unlock()

	tried := make(map[int64]bool)
	for ctx.Err() == nil {
		desired := e.desired()
		var next *versionEntry
		for i := len(desired) - 1; i >= 0 && next == nil; i-- {
			ve := e.versions[desired[i]]
			if tried[ve.version] || !ve.needsLoad() || ve.failed != nil && ve.failed.equal(ve.disk) {
				continue
			}
			tried[ve.version] = true
			if n := r.drainingCount(name); n > 0 {
				r.setState(ve, StateLoading, fmt.Sprintf("waiting for %d older session(s) of the model to drain", n))
				continue // the drain's end wakes the loop
			}
			next = ve
		}
		if next == nil {
			break
		}
		if when := r.loadVersion(ctx, e, next, now); !when.IsZero() && (due.IsZero() || when.Before(due)) {
			due = when
		}
		r.serve(e) // a new version takes traffic before the next one loads
	}
	r.serve(e)

	r.mu.Lock()
	defer r.mu.Unlock()
	desired := e.desired()
	for v, ve := range e.versions {
		switch {
		case ve.served && ve.failed != nil && ve.failed.equal(ve.disk):
			ve.state, ve.reason = StateReady, "serving the file loaded before; its new content was refused: "+ve.failReason
		case ve.served && !ve.onDisk:
			ve.state, ve.reason = StateReady, "removed; serving until the version replacing it is ready"
		case ve.served:
			ve.state, ve.reason = StateReady, ""
		case !ve.onDisk:
			delete(e.versions, v)
		case ve.failed != nil && ve.failed.equal(ve.disk):
			ve.state, ve.reason = StateFailed, ve.failReason
		case ve.state == StateLoading && slices.Contains(desired, v):
			// waiting; reason set by loadVersion or the drain check
		default:
			ve.state, ve.reason = StateUnavailable, "not selected by version policy "+e.policy.String()
		}
	}
	if gone && len(e.versions) == 0 {
		for in := range r.draining {
			if in.name == name {
				return due // listed until drained
			}
		}
		delete(r.models, name)
	}
	return due
}

// updatePolicy applies the model's version_policy file, if any. A broken
// file is logged once and the policy in force stays. Called with mu held.
func (r *Repository) updatePolicy(e *modelEntry, d *diskModel) {
	if !d.hasPolicy {
		if !d.partial {
			e.policy, e.policyMsg = r.cfg.Policy, ""
		}
		return
	}
	p, err := parsePolicyFile(d.policy)
	if err != nil {
		msg := err.Error()
		if msg != e.policyMsg {
			r.log.Warn("model repository: ignoring version policy file", "model", e.name,
				"file", filepath.Join(r.cfg.Repository, e.name, PolicyFileName), "reason", msg, "policy", e.policy.String())
			if r.cfg.Events != nil {
				r.cfg.Events.VersionRefused(e.name, 0, filepath.Join(r.cfg.Repository, e.name, PolicyFileName), err)
			}
		}
		e.policyMsg = msg
		return
	}
	e.policy, e.policyMsg = p, ""
}

// desired returns the versions the policy selects among those that can be
// served: on disk, and loaded or not refused in their current state.
func (e *modelEntry) desired() []int64 {
	var eligible []int64
	for v, ve := range e.versions {
		if ve.onDisk && (ve.live != nil || ve.failed == nil || !ve.failed.equal(ve.disk)) {
			eligible = append(eligible, v)
		}
	}
	slices.Sort(eligible)
	return e.policy.Select(eligible)
}

func (ve *versionEntry) needsLoad() bool {
	return ve.live == nil || !ve.liveStat.equal(ve.disk)
}

func (r *Repository) setState(ve *versionEntry, s State, reason string) {
	r.mu.Lock()
	ve.state, ve.reason = s, reason
	r.mu.Unlock()
}

func (r *Repository) drainingCount(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for in := range r.draining {
		if in.name == name {
			n++
		}
	}
	return n
}

// loadVersion reads, opens and warms up ve's file; on success ve.live is the
// new session (not served yet). It returns when to look again at a file that
// is still changing.
func (r *Repository) loadVersion(ctx context.Context, e *modelEntry, ve *versionEntry, now time.Time) (due time.Time) {
	data, st, sum, err := readStable(ve.path, r.cfg.MinFileAge, now)
	var changing *errChanging
	switch {
	case errors.As(err, &changing):
		r.mu.Lock()
		ve.disk = st
		ve.state, ve.reason = StateLoading, "file "+changing.reason
		r.mu.Unlock()
		return changing.due
	case err != nil:
		r.refuse(e.name, ve, st, fmt.Errorf("read: %w", err))
		return time.Time{}
	}
	if ve.live != nil && ve.live.sha256 == sum {
		r.mu.Lock() // touched or copied over with the same bytes
		ve.disk, ve.liveStat = st, st
		r.mu.Unlock()
		return time.Time{}
	}
	r.setState(ve, StateLoading, "loading")
	start := time.Now()
	in, err := r.openInstance(ctx, e.name, ve.version, ve.path, sum, data)
	if err != nil {
		r.refuse(e.name, ve, st, err)
		return time.Time{}
	}
	took := time.Since(start)
	r.mu.Lock()
	if old := ve.live; old != nil {
		// The routes still hold old; the next publish routes to in, then
		// lets old go.
		r.draining[old] = struct{}{}
		r.retireAfterPublish = append(r.retireAfterPublish, old)
	}
	ve.live, ve.liveStat, ve.disk = in, st, st
	ve.failed, ve.failReason = nil, ""
	ve.served = false
	r.mu.Unlock()
	r.log.Info("model version loaded", "model", e.name, "version", ve.version, "file", ve.path,
		"sha256", sum[:12], "took", took.Round(time.Millisecond))
	if r.cfg.Events != nil {
		r.cfg.Events.VersionLoaded(e.name, ve.version, took)
	}
	return time.Time{}
}

// refuse records that the file state st of ve was refused.
func (r *Repository) refuse(name string, ve *versionEntry, st fileStat, reason error) {
	if st.equal(fileStat{}) {
		st = ve.disk // unreadable (permissions): retry when the scan sees a change
	}
	r.mu.Lock()
	ve.disk = st
	ve.failed, ve.failReason = &st, reason.Error()
	ve.state, ve.reason = StateFailed, reason.Error()
	if ve.served {
		ve.state, ve.reason = StateReady, "serving the file loaded before; its new content was refused: "+ve.failReason
	}
	r.mu.Unlock()
	r.log.Warn("model file refused", "model", name, "version", ve.version, "file", ve.path, "reason", reason.Error())
	if r.cfg.Events != nil {
		r.cfg.Events.VersionRefused(name, ve.version, ve.path, reason)
	}
}

// openInstance opens data with gcn (which checks the contract) and runs one
// prediction on a two-node graph, so that a version takes traffic only once
// it has really run.
// In single-file mode (version 0) the version, and the name when name is "",
// come from the model's metadata.
func (r *Repository) openInstance(ctx context.Context, name string, version int64, path, sum string, data []byte) (*instance, error) {
	var m *gcn.Model
	var err error
	onLoadThread(func() {
		if m, err = gcn.OpenBytes(data, r.cfg.Options...); err != nil {
			return
		}
		if err = warmUp(ctx, m); err != nil {
			err = errors.Join(fmt.Errorf("warm-up: %w", err), m.Close())
		}
	})
	if err != nil {
		return nil, err
	}
	if version == 0 {
		version = fileModelVersion(m.Info())
		if name == "" {
			name = fileModelName(m.Info(), path)
		}
	}
	in := &instance{repo: r, name: name, version: version, path: path, sha256: sum, model: m}
	in.refs.Store(1)
	r.mu.Lock()
	r.resident[name]++
	r.peak[name] = max(r.peak[name], r.resident[name])
	r.mu.Unlock()
	return in, nil
}

// Loads run on one OS thread, so that the memory a session keeps comes from
// one glibc malloc arena instead of whichever arenas the threads Go happened
// to pick use: with Trim after each unload, RSS stays flat over reloads.
var (
	loadJobs      = make(chan func())
	startLoadLoop sync.Once
)

// onLoadThread runs f on the load thread and returns when f has.
func onLoadThread(f func()) {
	startLoadLoop.Do(func() {
		go func() {
			runtime.LockOSThread() // for the life of the process
			for job := range loadJobs {
				job()
			}
		}()
	})
	done := make(chan struct{})
	loadJobs <- func() {
		defer close(done)
		f()
	}
	<-done
}

func warmUp(ctx context.Context, m *gcn.Model) error {
	f := m.Info().FeatureDim
	x := make([]float32, 2*f)
	for i := range x {
		x[i] = 1
	}
	ctx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	p, err := m.Predict(ctx, gcn.Tensors{NumNodes: 2, Features: x, EdgeIndex: []int64{0, 1}})
	if err != nil {
		return err
	}
	if len(p.Scores) != 2 {
		return fmt.Errorf("%d scores for 2 nodes", len(p.Scores))
	}
	for _, v := range p.Probabilities {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return errors.New("non-finite output on a two-node graph")
		}
	}
	return nil
}

// serve recomputes which of e's versions are served: those the policy
// selects that are loaded, and, while a selected version is still waiting,
// as many previously served versions as are missing, so a model never stops
// serving while its next version loads. Loaded versions that are not served
// are retired. Then it publishes the routes.
func (r *Repository) serve(e *modelEntry) {
	desired := e.desired()
	r.mu.Lock()
	serve := make(map[int64]bool)
	missing := 0
	for _, v := range desired {
		if ve := e.versions[v]; ve.live != nil {
			serve[v] = true
		} else {
			missing++
		}
	}
	if missing > 0 {
		// Stand-ins: served versions still on disk, highest first, then
		// removed ones (a removed version serves on only until the version
		// replacing it is ready).
		var standIns []*versionEntry
		for v, ve := range e.versions {
			if ve.served && ve.live != nil && !serve[v] {
				standIns = append(standIns, ve)
			}
		}
		slices.SortFunc(standIns, func(a, b *versionEntry) int {
			if a.onDisk != b.onDisk {
				if a.onDisk {
					return -1
				}
				return 1
			}
			return cmpInt64(b.version, a.version)
		})
		for _, ve := range standIns[:min(missing, len(standIns))] {
			serve[ve.version] = true
		}
	}
	for v, ve := range e.versions {
		ve.served = serve[v] && ve.live != nil
		if !ve.served && ve.live != nil {
			r.draining[ve.live] = struct{}{}
			r.retireAfterPublish = append(r.retireAfterPublish, ve.live)
			ve.live, ve.liveStat = nil, fileStat{}
		}
	}
	r.mu.Unlock()
	r.publish()
}

// publish swaps in routes built from the model entries, then drops the old
// routes' hold on retired sessions: a session closes once its last lease is
// released, and no new lease can find it. Called with reconcileMu held.
func (r *Repository) publish() {
	r.mu.Lock()
	rt := &routes{served: make(map[string][]*instance, len(r.models))}
	for name, m := range r.models {
		rt.names = append(rt.names, name)
		var vs []*instance
		for _, ve := range m.versions {
			if ve.served {
				vs = append(vs, ve.live)
			}
		}
		slices.SortFunc(vs, func(a, b *instance) int { return cmpInt64(a.version, b.version) })
		rt.served[name] = vs
	}
	slices.Sort(rt.names)
	rt.def = r.cfg.DefaultModel
	if rt.def == "" && len(rt.names) == 1 {
		rt.def = rt.names[0]
	}
	if r.fileName != "" {
		rt.def = r.fileName
	}
	retired := r.retireAfterPublish
	r.retireAfterPublish = nil
	r.mu.Unlock()
	if !r.closed {
		r.routes.Store(rt)
	}
	for _, in := range retired {
		in.unref()
	}
}

// closeInstance closes a session whose last reference is gone.
func (r *Repository) closeInstance(in *instance) error {
	err := in.model.Close()
	memtrim.Trim() // a session's freed memory stays mapped otherwise
	r.mu.Lock()
	delete(r.draining, in)
	r.resident[in.name]--
	r.mu.Unlock()
	r.log.Info("model version unloaded", "model", in.name, "version", in.version, "file", in.path)
	if r.cfg.Events != nil {
		r.cfg.Events.VersionUnloaded(in.name, in.version)
	}
	r.nudge() // a load may be waiting for this drain
	return err
}

// Close stops the poll loop, stops handing out leases and closes every
// session that no lease holds; a session still leased closes on its last
// Release. It returns the joined errors of the sessions it closed.
func (r *Repository) Close() error {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.routes.Store(nil)
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
	}
	var retired []*instance
	for _, m := range r.models {
		for _, ve := range m.versions {
			if ve.live != nil {
				retired = append(retired, ve.live)
				r.draining[ve.live] = struct{}{}
				ve.live, ve.served = nil, false
				ve.state, ve.reason = StateUnavailable, "model repository closed"
			}
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, in := range retired {
		if in.refs.Add(-1) == 0 {
			errs = append(errs, r.closeInstance(in))
		}
	}
	return errors.Join(errs...)
}
