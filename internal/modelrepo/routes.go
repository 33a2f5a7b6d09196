package modelrepo

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gcnserve/gcnserve/gcn"
)

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
// has its session closed on the repository's goroutine: Release never waits
// for an unload.
func (l *Lease) Release() {
	if l.released.CompareAndSwap(false, true) {
		l.inst.unref()
	}
}

// routes is one immutable view of the served versions.
type routes struct {
	served map[string][]*instance // by model; ascending version
	names  []string               // every known model, sorted
	def    string
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
	session session
	model   *gcn.Model // session, when it is a real one (not a test's fake)
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

// unref drops a reference; the last one hands the session to the
// repository's unloader (the caller, often a request, does not wait).
func (in *instance) unref() {
	if in.refs.Add(-1) == 0 {
		in.repo.unload(in)
	}
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

// signature identifies the served set, to tell whether a reload changed it.
func (rt *routes) signature() string {
	if rt == nil {
		return "" // closed
	}
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

// publish swaps in routes built from the model entries, then drops the old
// routes' hold on retired sessions: a session closes once its last lease is
// released, and no new lease can find it. Called with reconcileSem held.
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
	if !r.closed.Load() {
		r.routes.Store(rt)
	}
	// This is the reconciling goroutine, not a request's: a session no
	// lease holds closes here and now, so a removed model is gone when
	// Reload returns.
	for _, in := range retired {
		if in.refs.Add(-1) == 0 {
			if err := r.closeInstance(in); err != nil {
				r.log.Error("close model session", "model", in.name, "version", in.version, "err", err)
			}
		}
	}
}
