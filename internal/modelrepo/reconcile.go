package modelrepo

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

func (r *Repository) reconcile(ctx context.Context) (changed bool, err error) {
	if r.closed.Load() {
		return false, gcn.Errorf(gcn.KindUnavailable, "model repository is closed")
	}
	if err := r.lockReconcile(ctx); err != nil {
		return false, fmt.Errorf("model repository: waiting for the scan in progress: %w", err)
	}
	defer r.unlockReconcile()
	if r.closed.Load() {
		return false, gcn.Errorf(gcn.KindUnavailable, "model repository is closed")
	}
	before := r.routes.Load().signature()
	now := time.Now()
	var due time.Time
	var disk map[string]*diskModel
	var skipped map[string]string
	if r.cfg.ModelFile != "" {
		disk, skipped = r.scanFile() // a one-model repository
	} else if disk, skipped, err = scanRepository(r.cfg.Repository); err != nil {
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
	r.publish()
	r.schedule(due)
	return r.routes.Load().signature() != before, nil
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
	for v, dv := range d.versions {
		// Refused unopened (a FIFO, a device, too big): once per file state.
		if ve := e.versions[v]; dv.refused != "" && (ve.failed == nil || !ve.failed.equal(dv.stat)) {
			r.refuse(name, ve, dv.stat, &refusedError{dv.refused})
		}
	}

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
		case ve.served && d.gone != "":
			ve.state, ve.reason = StateReady, "file gone; serving the copy loaded before: "+d.gone
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
	if d.policyRefused != "" {
		err = &refusedError{d.policyRefused}
	}
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
