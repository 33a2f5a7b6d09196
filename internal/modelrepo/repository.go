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
// session is closed after its last lease is released, on the repository's
// own goroutine (never the releasing request's). Versions of one model load
// one at a time, and a model does not load a new version while an old one is
// still draining, so at most the served versions plus one are resident.
//
// A file that is not a regular file (a FIFO, a device, a directory, or a
// symlink to one of them) or is too big (MaxModelBytes, MaxPolicyBytes) is
// refused before it is opened, so no file can block a scan or exhaust
// memory. A file that cannot be read, is not an ONNX model, breaks the
// contract or fails its warm-up is refused too: one log line naming the file
// and the reason, one Events.VersionRefused call, state FAILED; whatever was
// serving keeps serving. The file is not retried until it changes (size,
// mtime or inode).
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
	// overrides it. Default (zero value) "latest". Ignored in single-file
	// mode (one file, one version).
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
// reloading goroutine, or from the repository's unloader goroutine for an
// unload after a drain; they must not block.
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

// Repository serves the models of a Config. Acquire is safe for concurrent
// use with everything, and never waits for a load.
type Repository struct {
	cfg  Config
	log  *slog.Logger
	load loadFunc // loadModel; a fake in the state machine's tests

	// routes is what Acquire reads: the served versions, swapped whole after
	// every change. nil after Close.
	routes atomic.Pointer[routes]

	// reconcileSem (capacity 1) serialises scans and is held across loads;
	// a semaphore rather than a mutex so that Reload and Close wait for it
	// no longer than their context allows. The model entries are written
	// only while holding it, and also under mu so that Models can read
	// them. Nothing a request or a signal needs waits for it.
	reconcileSem chan struct{}
	closed       atomic.Bool       // set first thing by Close
	skipped      map[string]string // paths already logged as skipped; reconcileSem
	fileName     string            // single-file mode: the model's name; reconcileSem

	mu       sync.Mutex
	models   map[string]*modelEntry // guarded by mu (written also under reconcileSem)
	draining map[*instance]struct{} // retired sessions with leases; mu
	resident map[string]int         // open sessions per model; mu
	peak     map[string]int         // highest resident count per model; mu

	// retireAfterPublish are sessions the next publish stops routing to and
	// releases the routes' reference on; guarded by mu.
	retireAfterPublish []*instance

	// unloads are sessions whose last reference is gone, waiting for the
	// unloader goroutine to close them; shut is set by Close: the unloader
	// ends once no session is open. Both guarded by mu.
	unloads      []*instance
	shut         bool
	unloadKick   chan struct{} // wakes the unloader
	unloaderDone chan struct{} // closed when the unloader has ended

	kick   chan struct{} // wakes the loop (drain done, pending file due)
	cancel context.CancelFunc
	done   chan struct{}
	timer  *time.Timer // pending-file wake-up; guarded by mu
}

// closeWait bounds how long Close waits for a scan in progress (a read of a
// file on a stalled network volume, say) before it gives up on it: shutting
// down never hangs on the model volume.
const closeWait = 5 * time.Second

// Open scans the repository (or the model file), loads and warms up what the
// version policies select, and starts the poll loop. Broken files are refused
// and reported, not fatal. Open fails when the repository cannot be read,
// when no version of any model can be served, or when Config.DefaultModel
// names a model that has no served version. Files still changing at start
// are waited for (a few times MinFileAge).
func Open(cfg Config) (*Repository, error) {
	return open(cfg, loadModel)
}

// open is Open with the loader given (a fake in tests).
func open(cfg Config, load loadFunc) (*Repository, error) {
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
	if cfg.ModelFile != "" {
		cfg.Policy = Policy{} // one file, one version: always served
	}
	memtrim.LimitArenas() // before the first session: see package memtrim
	r := &Repository{
		cfg:          cfg,
		log:          cfg.Logger,
		load:         load,
		reconcileSem: make(chan struct{}, 1),
		skipped:      make(map[string]string),
		models:       make(map[string]*modelEntry),
		draining:     make(map[*instance]struct{}),
		resident:     make(map[string]int),
		peak:         make(map[string]int),
		unloadKick:   make(chan struct{}, 1),
		unloaderDone: make(chan struct{}),
		kick:         make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	r.routes.Store(&routes{served: map[string][]*instance{}})
	go r.unloader()

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

// Close stops the poll loop, stops handing out leases and closes every
// session that no lease holds; a session still leased closes after its last
// Release. It returns the joined errors of the sessions it closed. A scan
// stuck in I/O on the model volume is waited for at most closeWait: Close
// then returns an error saying so, and leaves the sessions to the process's
// exit.
func (r *Repository) Close() error {
	first := r.closed.CompareAndSwap(false, true)
	if first {
		r.routes.Store(nil) // no new leases from here on
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	if r.cancel != nil {
		r.cancel()
		select {
		case <-r.done:
		case <-ctx.Done():
		}
	}
	if err := r.lockReconcile(ctx); err != nil {
		return fmt.Errorf("modelrepo: a repository scan still runs after %s (blocked on the model volume?); not waiting for it", closeWait)
	}
	defer r.unlockReconcile()
	r.routes.Store(nil) // in case a publish raced with the Store above
	r.mu.Lock()
	if !first && r.shut {
		r.mu.Unlock()
		return nil
	}
	r.shut = true
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
	// Wake the unloader: it ends now unless a lease still holds a session
	// (then after the last Release); wait for it in the first case, so that
	// Close leaves no goroutine behind.
	select {
	case r.unloadKick <- struct{}{}:
	default:
	}
	r.mu.Lock()
	open := 0
	for _, n := range r.resident {
		open += n
	}
	r.mu.Unlock()
	if open == 0 {
		select {
		case <-r.unloaderDone:
		case <-ctx.Done():
		}
	}
	return errors.Join(errs...)
}

// lockReconcile takes reconcileSem, or fails when ctx ends first.
func (r *Repository) lockReconcile(ctx context.Context) error {
	select {
	case r.reconcileSem <- struct{}{}:
		return nil
	default:
	}
	select {
	case r.reconcileSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Repository) unlockReconcile() { <-r.reconcileSem }
