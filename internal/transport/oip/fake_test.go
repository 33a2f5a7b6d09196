package oip

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/gcnserve/gcnserve/gcn"
)

// fakeBackend serves fake models for the transport's tests: no model runs.
// Its predictions are a pure function of the input (see fakeScore), so the
// tests can check that tensors reach the model intact and that outputs come
// back in the right places.
type fakeBackend struct {
	mu       sync.Mutex
	models   map[string][]int64 // name -> served versions, ascending
	loading  map[string]bool    // names whose versions exist but are not ready
	def      string
	ready    bool
	begun    int   // Begin calls
	closed   int   // Request.Close calls
	finished int   // Request.Finish calls
	wire     int64 // the last SetWireBytes
	predicts []Tensors
	err      error // returned by Predict when set
	limits   Limits
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		models:  map[string][]int64{"gcn-karate": {1, 2}, "gcn-cora": {1}},
		loading: map[string]bool{},
		def:     "gcn-karate",
		ready:   true,
	}
}

func (b *fakeBackend) Begin(context.Context, int64) (Request, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.begun++
	return &fakeRequest{b: b}, nil
}

func (b *fakeBackend) Limits() Limits {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limits
}

func (b *fakeBackend) Acquire(model, version string) (Model, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if model == "" {
		model = b.def
	}
	versions, ok := b.models[model]
	if !ok {
		return nil, gcn.Errorf(gcn.KindNotFound, "model %q is not served (models: gcn-cora, gcn-karate)", model)
	}
	if b.loading[model] {
		return nil, gcn.Errorf(gcn.KindUnavailable, "model %q is loading", model)
	}
	v := versions[len(versions)-1]
	if version != "" {
		n, err := strconv.ParseInt(version, 10, 64)
		if err != nil || !slices.Contains(versions, n) {
			return nil, gcn.Errorf(gcn.KindNotFound, "model %q has no version %q", model, version)
		}
		v = n
	}
	info := Info{Name: model, FeatureDim: 3, NumClasses: 2, ClassNames: []string{"a", "b"}, ScoreClass: 0}
	return &fakeModel{name: model, version: v, info: info}, nil
}

func (b *fakeBackend) Versions(model string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, v := range b.models[model] {
		out = append(out, strconv.FormatInt(v, 10))
	}
	return out
}

func (b *fakeBackend) Ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready
}

// lastPredict returns the tensors of the last Predict call and the count.
func (b *fakeBackend) lastPredict() (Tensors, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.predicts) == 0 {
		return Tensors{}, 0
	}
	return b.predicts[len(b.predicts)-1], len(b.predicts)
}

// counts returns how many requests began, closed and finished.
func (b *fakeBackend) counts() (begun, closed, finished int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.begun, b.closed, b.finished
}

// fakeRequest is a fake serving.Request.
type fakeRequest struct {
	b     *fakeBackend
	model Model
}

func (r *fakeRequest) SetWireBytes(_ context.Context, n int64) error {
	r.b.mu.Lock()
	r.b.wire = n
	r.b.mu.Unlock()
	return nil
}

func (r *fakeRequest) Route(model, version string) (Model, error) {
	m, err := r.b.Acquire(model, version)
	r.model = m
	return m, err
}

// Predict gives node i the score fakeScore(t, i); probabilities [s, 1-s];
// class 0 when s >= 0.5.
func (r *fakeRequest) Predict(_ context.Context, t Tensors) (Prediction, error) {
	r.b.mu.Lock()
	r.b.predicts = append(r.b.predicts, t)
	err := r.b.err
	r.b.mu.Unlock()
	if err != nil {
		return Prediction{}, err
	}
	p := Prediction{NumClasses: 2, Probabilities: make([]float32, 2*t.NumNodes),
		ClassIndex: make([]int32, t.NumNodes), Scores: make([]float32, t.NumNodes)}
	for i := range t.NumNodes {
		s := fakeScore(t, i)
		p.Scores[i] = s
		p.Probabilities[2*i], p.Probabilities[2*i+1] = s, 1-s
		if s < 0.5 {
			p.ClassIndex[i] = 1
		}
	}
	return p, nil
}

func (r *fakeRequest) Finish() {
	r.b.mu.Lock()
	r.b.finished++
	r.b.mu.Unlock()
}

func (r *fakeRequest) Close() {
	r.b.mu.Lock()
	r.b.closed++
	r.b.mu.Unlock()
}

type fakeModel struct {
	name    string
	version int64
	info    Info
}

func (m *fakeModel) Name() string    { return m.name }
func (m *fakeModel) Version() string { return strconv.FormatInt(m.version, 10) }
func (m *fakeModel) Info() Info      { return m.info }
func (m *fakeModel) Release()        {}

// fakeScore is node's feature sum plus its out-degree, squashed into [0, 1).
func fakeScore(t Tensors, node int) float32 {
	f := len(t.Features) / t.NumNodes
	var sum float32
	for _, v := range t.Features[node*f : (node+1)*f] {
		sum += v
	}
	e := len(t.EdgeIndex) / 2
	for _, src := range t.EdgeIndex[:e] {
		if int(src) == node {
			sum++
		}
	}
	return sum / (1 + sum)
}

// discardLogger keeps the expected "request failed" lines of error tests
// out of the test output.
var discardLogger = slog.New(slog.DiscardHandler)
