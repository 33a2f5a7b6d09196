package oip

import (
	"context"
	"strconv"

	"github.com/gcnserve/gcnserve/internal/modelrepo"
	"github.com/gcnserve/gcnserve/internal/serving"
)

// ServingBackend runs the transport on the server's serving layer. ready
// reports server readiness (the server's health, which turns false while
// draining); nil means "the default model has a served version".
func ServingBackend(svc *serving.Service, ready func() bool) Backend {
	return servingBackend{svc: svc, ready: ready}
}

type servingBackend struct {
	svc   *serving.Service
	ready func() bool
}

func (b servingBackend) Begin(ctx context.Context, wireBytes int64) (Request, error) {
	r, err := b.svc.Begin(ctx, wireBytes)
	if err != nil {
		return nil, err
	}
	return servingRequest{r}, nil
}

// BeginRead is serving's BeginRead, for gRPC's ModelInfer (grpc.go).
func (b servingBackend) BeginRead(ctx context.Context, readBytes int64) (Request, error) {
	r, err := b.svc.BeginRead(ctx, readBytes)
	if err != nil {
		return nil, err
	}
	return servingRequest{r}, nil
}

func (b servingBackend) Acquire(model, version string) (Model, error) {
	l, err := b.svc.Acquire(model, version)
	if err != nil {
		return nil, err
	}
	return leaseModel{lease: l, release: l.Release}, nil
}

func (b servingBackend) Versions(model string) []string {
	for _, m := range b.svc.Models() {
		if m.Name != model {
			continue
		}
		var out []string
		for _, v := range m.Versions {
			if v.State == modelrepo.StateReady {
				out = append(out, strconv.FormatInt(v.Version, 10))
			}
		}
		return out
	}
	return nil
}

func (b servingBackend) Ready() bool {
	if b.ready != nil {
		return b.ready()
	}
	def := b.svc.DefaultModel()
	for _, m := range b.svc.Models() {
		if m.Name == def {
			return m.Ready()
		}
	}
	return false
}

func (b servingBackend) Limits() Limits {
	cfg := b.svc.Config()
	l := Limits{MaxNodes: cfg.MaxNodes, MaxEdges: cfg.MaxEdges}
	if cfg.Budget != nil {
		l.Budget = cfg.Budget.Bytes()
	}
	return l
}

type servingRequest struct{ r *serving.Request }

func (s servingRequest) SetWireBytes(ctx context.Context, n int64) error {
	return s.r.SetWireBytes(ctx, n)
}

func (s servingRequest) Route(model, version string) (Model, error) {
	if _, err := s.r.Route(model, version); err != nil {
		return nil, err
	}
	return leaseModel{lease: s.r.Lease()}, nil
}

func (s servingRequest) Predict(ctx context.Context, t Tensors) (Prediction, error) {
	return s.r.Predict(ctx, t)
}

func (s servingRequest) Finish() { s.r.Finish() }
func (s servingRequest) Close()  { s.r.Close() }

// leaseModel is a leased version; release is nil when the request owns
// the lease.
type leaseModel struct {
	lease   *modelrepo.Lease
	release func()
}

func (m leaseModel) Name() string    { return m.lease.Name }
func (m leaseModel) Version() string { return strconv.FormatInt(m.lease.Version, 10) }
func (m leaseModel) Info() Info      { return m.lease.Model.Info() }
func (m leaseModel) Release() {
	if m.release != nil {
		m.release()
	}
}
