package modelrepo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

// fileModelName is a single file's model name: its model_name metadata, else
// the file name without its extension.
func fileModelName(info gcn.Info, path string) string {
	if n := info.Name; n != "" && checkModelName(n) == nil {
		return n
	}
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// fileModelVersion is a single file's version: its integer model_version
// metadata, else 1.
func fileModelVersion(info gcn.Info) int64 {
	if v, ok := parseVersion(info.Version); ok {
		return v
	}
	if v, err := strconv.ParseInt(info.Version, 10, 64); err == nil && v > 0 {
		return v
	}
	return 1
}

// reconcileFile is reconcileModel for single-file mode: one model, one
// version at a time. A changed file is loaded and, once warm, replaces the
// served version whatever its version number; a removed file keeps the loaded
// session serving (as before reloads existed). It returns when to look again
// at a file still changing.
func (r *Repository) reconcileFile(ctx context.Context, now time.Time) (due time.Time) {
	path := r.cfg.ModelFile
	r.mu.Lock()
	if len(r.models) == 0 {
		name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		r.models[name] = &modelEntry{name: name, versions: make(map[int64]*versionEntry)}
	}
	var e *modelEntry
	for _, m := range r.models {
		e = m
	}
	var cur *versionEntry
	for _, v := range e.versions {
		cur = v
	}
	if cur == nil {
		cur = &versionEntry{path: path} // version 0: not loaded yet
		e.versions[0] = cur
	}
	r.mu.Unlock()

	fi, err := statFile(path, MaxModelBytes)
	var refused *refusedError
	if errors.As(err, &refused) {
		// A FIFO, a device, too big: refused unopened, once per file state.
		if st := statOf(fi); cur.failed == nil || !cur.failed.equal(st) {
			r.refuse(e.name, cur, st, err)
		}
		return time.Time{}
	}
	if err != nil {
		if cur.live != nil {
			if r.skipped[path] == "" {
				r.log.Warn("model file is gone; serving the loaded copy", "file", path, "err", err)
			}
			r.skipped[path] = err.Error()
			r.setState(cur, StateReady, "file gone; serving the copy loaded before: "+err.Error())
			return time.Time{}
		}
		if r.skipped[path] != err.Error() {
			r.refuse(e.name, cur, fileStat{}, fmt.Errorf("read: %w", err))
		}
		r.skipped[path] = err.Error()
		return time.Time{}
	}
	delete(r.skipped, path)
	st := statOf(fi)
	switch {
	case cur.live != nil && cur.liveStat.equal(st):
		r.setState(cur, StateReady, "")
		return time.Time{}
	case cur.failed != nil && cur.failed.equal(st):
		return time.Time{}
	}

	data, st, sum, err := readStable(path, r.cfg.MinFileAge, now)
	var changing *errChanging
	switch {
	case errors.As(err, &changing):
		if cur.live == nil {
			r.setState(cur, StateLoading, "file "+changing.reason)
		}
		return changing.due
	case err != nil:
		r.refuse(e.name, cur, st, readError(err))
		return time.Time{}
	case cur.live != nil && cur.live.sha256 == sum:
		r.mu.Lock()
		cur.disk, cur.liveStat = st, st
		r.mu.Unlock()
		return time.Time{}
	}
	if n := r.drainingCount(e.name); n > 0 {
		// At most old and new resident: the drain's end wakes the loop.
		if cur.live == nil {
			r.setState(cur, StateLoading, fmt.Sprintf("waiting for %d older session(s) to drain", n))
		}
		return time.Time{}
	}
	if cur.live == nil {
		r.setState(cur, StateLoading, "loading")
	}
	start := time.Now()
	in, err := r.openInstance(ctx, r.fileName, 0, path, sum, data)
	if err != nil {
		r.refuse(e.name, cur, st, err)
		return time.Time{}
	}
	took := time.Since(start)

	r.mu.Lock()
	if r.fileName == "" {
		// The first load names the model.
		delete(r.models, e.name)
		e.name = in.name
		r.models[e.name] = e
		r.fileName = e.name
	}
	if old := cur.live; old != nil {
		r.draining[old] = struct{}{}
		r.retireAfterPublish = append(r.retireAfterPublish, old)
	}
	e.versions = map[int64]*versionEntry{in.version: {
		version: in.version, path: path, onDisk: true, disk: st,
		live: in, liveStat: st, served: true, state: StateReady,
	}}
	r.mu.Unlock()
	r.log.Info("model version loaded", "model", in.name, "version", in.version, "file", path,
		"sha256", sum[:12], "took", took.Round(time.Millisecond))
	if r.cfg.Events != nil {
		r.cfg.Events.VersionLoaded(in.name, in.version, took)
	}
	return time.Time{}
}
