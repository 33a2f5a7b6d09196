// Package oiptest serves real gcn models through the oip transport without
// the serving layer, for tests: each model is served under its Info().Name
// at its one version, Info().Version, with no admission control.
package oiptest

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/transport/oip"
)

// Backend is an oip.Backend over open models. Safe for concurrent use: it
// never changes after NewBackend.
type Backend struct {
	models map[string]*gcn.Model
	def    string
}

var _ oip.Backend = (*Backend)(nil)

// NewBackend serves models; the first is the default model.
func NewBackend(models ...*gcn.Model) *Backend {
	b := &Backend{models: make(map[string]*gcn.Model, len(models))}
	for i, m := range models {
		name := m.Info().Name
		if i == 0 {
			b.def = name
		}
		b.models[name] = m
	}
	return b
}

// Acquire implements oip.Backend.
func (b *Backend) Acquire(model, version string) (oip.Model, error) {
	if model == "" {
		model = b.def
	}
	m, ok := b.models[model]
	if !ok {
		names := make([]string, 0, len(b.models))
		for n := range b.models {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, gcn.Errorf(gcn.KindNotFound, "model %q is not served (models: %s)", model, strings.Join(names, ", "))
	}
	if version != "" && version != m.Info().Version {
		return nil, gcn.Errorf(gcn.KindNotFound, "model %q has no version %q (versions: %s)", model, version, m.Info().Version)
	}
	return lease{m}, nil
}

// Admit implements oip.Backend: everything is admitted.
func (b *Backend) Admit(context.Context, int64) (func(), error) { return func() {}, nil }

// Versions implements oip.Backend.
func (b *Backend) Versions(model string) []string {
	if m, ok := b.models[model]; ok {
		return slices.Clone([]string{m.Info().Version})
	}
	return nil
}

// Ready implements oip.Backend.
func (b *Backend) Ready() bool { return len(b.models) > 0 }

type lease struct{ m *gcn.Model }

func (l lease) Name() string    { return l.m.Info().Name }
func (l lease) Version() string { return l.m.Info().Version }
func (l lease) Info() gcn.Info  { return l.m.Info() }
func (l lease) Release()        {}
func (l lease) Predict(ctx context.Context, t gcn.Tensors) (gcn.Prediction, error) {
	return l.m.Predict(ctx, t)
}
