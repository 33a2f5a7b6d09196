package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/internal/admission"
	"github.com/gcnserve/gcnserve/internal/auth"
	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
)

// repoEvents reports the model repository's refusals as metrics; loads and
// unloads are tracked from the served set (modelInfoTracker).
type repoEvents struct{ m *metrics.Metrics }

func (e repoEvents) VersionLoaded(string, int64, time.Duration) {}
func (e repoEvents) VersionRefused(name string, _ int64, _ string, _ error) {
	e.m.ModelLoadFailed(name)
}
func (e repoEvents) VersionUnloaded(string, int64) {}

// modelInfoTracker keeps gcnserve_model_info equal to the set of READY
// versions: each change of the served set adds and removes series.
type modelInfoTracker struct {
	mu     sync.Mutex
	served map[[3]string]bool // model, version, sha256; guarded by mu
}

func (t *modelInfoTracker) update(m *metrics.Metrics, models []modelrepo.ModelState) {
	now := map[[3]string]bool{}
	for _, ms := range models {
		for _, v := range ms.Versions {
			if v.State == modelrepo.StateReady {
				now[[3]string{ms.Name, strconv.FormatInt(v.Version, 10), v.SHA256}] = true
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range now {
		if !t.served[k] {
			m.ModelLoaded(k[0], k[1], k[2])
		}
	}
	for k := range t.served {
		if !now[k] {
			m.ModelUnloaded(k[0], k[1], k[2])
		}
	}
	t.served = now
}

// admissionObserver reports the memory budget's queue and use as metrics.
type admissionObserver struct {
	m      *metrics.Metrics
	budget int64
}

func (o admissionObserver) QueueLength(n int)           { o.m.SetAdmissionQueueLength(n) }
func (o admissionObserver) InUse(bytes int64)           { o.m.SetAdmissionBytes(bytes, o.budget) }
func (o admissionObserver) Admitted(wait time.Duration) { o.m.ObserveAdmissionWait(wait) }
func (o admissionObserver) Refused(r admission.Reason, wait time.Duration) {
	o.m.ObserveAdmissionWait(wait)
	o.m.AdmissionRejected(string(r))
}

// authObserver counts bearer-token refusals by protocol.
type authObserver struct{ m *metrics.Metrics }

func (o authObserver) Unauthenticated(protocol string, r auth.Reason) {
	o.m.AuthFailed(protocol, string(r))
}
