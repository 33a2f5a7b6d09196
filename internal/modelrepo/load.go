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
