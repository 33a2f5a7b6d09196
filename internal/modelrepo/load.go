package modelrepo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/memtrim"
)

// warmupTimeout bounds the warm-up prediction of a new version.
const warmupTimeout = 30 * time.Second

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
		r.refuse(e.name, ve, st, readError(err))
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
	name, version := e.name, ve.version
	if r.cfg.ModelFile != "" {
		// Single-file mode: the version (and, at the first load, the name)
		// come from the file's metadata.
		name, version = r.fileName, 0
	}
	in, err := r.openInstance(ctx, name, version, ve.path, sum, data)
	if err != nil {
		r.refuse(e.name, ve, st, err)
		return time.Time{}
	}
	took := time.Since(start)
	r.mu.Lock()
	if r.cfg.ModelFile != "" {
		r.adoptFileIdentity(e, ve, in)
	}
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

// readError is the reason a file that could not be read is refused.
func readError(err error) error {
	var refused *refusedError
	if errors.As(err, &refused) {
		return err // says what the file is
	}
	return fmt.Errorf("read: %w", err)
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

// session is one loaded, warmed-up model version: a *gcn.Model, or a fake in
// the tests of the version state machine.
type session interface {
	Info() gcn.Info
	Close() error
}

// loadFunc turns a model file's bytes into a warmed-up session. The
// repository's is loadModel; the state machine's tests pass a fake (as
// ollama's scheduler tests replace loadFn), so that they run in milliseconds
// without ONNX Runtime.
type loadFunc func(ctx context.Context, data []byte, opts []gcn.Option) (session, error)

// loadModel opens data with gcn (which checks the contract) and runs one
// prediction on a two-node graph, so that a version takes traffic only once
// it has really run.
func loadModel(ctx context.Context, data []byte, opts []gcn.Option) (session, error) {
	var m *gcn.Model
	var err error
	onLoadThread(func() {
		if m, err = gcn.OpenBytes(data, opts...); err != nil {
			return
		}
		if err = warmUp(ctx, m); err != nil {
			err = errors.Join(fmt.Errorf("warm-up: %w", err), m.Close())
		}
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// openInstance loads data as a session of name and version.
// In single-file mode (version 0) the version, and the name when name is "",
// come from the model's metadata.
func (r *Repository) openInstance(ctx context.Context, name string, version int64, path, sum string, data []byte) (*instance, error) {
	m, err := r.load(ctx, data, r.cfg.Options)
	if err != nil {
		return nil, err
	}
	if version == 0 {
		version = fileModelVersion(m.Info())
		if name == "" {
			name = fileModelName(m.Info(), path)
		}
	}
	in := &instance{repo: r, name: name, version: version, path: path, sha256: sum, session: m}
	in.model, _ = m.(*gcn.Model)
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

// unload hands a session whose last reference is gone to the unloader: the
// request that released it returns at once, and closing it (and trimming
// the heap) happens on the repository's own goroutine.
func (r *Repository) unload(in *instance) {
	r.mu.Lock()
	r.unloads = append(r.unloads, in)
	r.mu.Unlock()
	select {
	case r.unloadKick <- struct{}{}:
	default:
	}
}

// unloader closes the sessions unload hands it. It ends once the repository
// is closed and no session is open any more.
func (r *Repository) unloader() {
	defer close(r.unloaderDone)
	for range r.unloadKick {
		for {
			r.mu.Lock()
			batch := r.unloads
			r.unloads = nil
			open := 0
			for _, n := range r.resident {
				open += n
			}
			shut := r.shut && open == 0
			r.mu.Unlock()
			if shut {
				return
			}
			if len(batch) == 0 {
				break
			}
			for _, in := range batch {
				if err := r.closeInstance(in); err != nil {
					r.log.Error("close model session", "model", in.name, "version", in.version, "err", err)
				}
			}
		}
	}
}

// closeInstance closes a session whose last reference is gone.
func (r *Repository) closeInstance(in *instance) error {
	err := in.session.Close()
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
