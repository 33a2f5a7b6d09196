package modelrepo

import (
	"fmt"
	"slices"
	"strings"
)

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
	// PolicyReason says why the model's version_policy file is ignored (a
	// FIFO, a device, over MaxPolicyBytes, bad syntax); "" when it is used
	// or absent. Every version's Reason repeats it, so that ListModels
	// shows it.
	PolicyReason string
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
		if m.policyMsg != "" {
			ms.PolicyReason = m.policyMsg
			note := fmt.Sprintf("%s ignored (%s); policy in force: %s", PolicyFileName, m.policyMsg, ms.Policy)
			for i := range ms.Versions {
				if ms.Versions[i].Reason == "" {
					ms.Versions[i].Reason = note
				} else {
					ms.Versions[i].Reason += "; " + note
				}
			}
		}
		slices.SortFunc(ms.Versions, func(a, b VersionState) int { return cmpInt64(a.Version, b.Version) })
		out = append(out, ms)
	}
	slices.SortFunc(out, func(a, b ModelState) int { return strings.Compare(a.Name, b.Name) })
	return out
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
