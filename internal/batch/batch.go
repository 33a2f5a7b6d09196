// Package batch merges concurrent small graphs into one model run.
//
// A batch is the disjoint union of its graphs: features concatenated, edge
// indexes offset by the nodes before them. For a model whose message passing
// stays within connected components (metadata "batchable"), each graph's
// rows of the merged output are exactly its own result, while ONNX Runtime's
// fixed cost per run is paid once per batch instead of once per request.
package batch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gcnserve/gcnserve/internal/infer"
)

// Options bound a batch. The zero value of a field means its default.
type Options struct {
	// MaxNodes and MaxEdges bound one merged batch; a graph larger than
	// either bypasses batching. Defaults 4,096 nodes and 32,768 edges.
	MaxNodes, MaxEdges int
	// MaxDelay is how long the first graph of a batch may wait for company.
	// Default 200µs. 0 after defaulting is impossible; use a tiny value to
	// merge only what is already queued.
	MaxDelay time.Duration
	// Workers is how many batches run at once. Default runtime.NumCPU().
	Workers int
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{MaxNodes: 4096, MaxEdges: 32768, MaxDelay: 200 * time.Microsecond, Workers: runtime.NumCPU()}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.MaxNodes <= 0 {
		o.MaxNodes = d.MaxNodes
	}
	if o.MaxEdges <= 0 {
		o.MaxEdges = d.MaxEdges
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = d.MaxDelay
	}
	if o.Workers <= 0 {
		o.Workers = d.Workers
	}
	return o
}

// ErrClosed answers Predict calls made or still queued after Close.
var ErrClosed = errors.New("batcher closed")

// Model is what a Batcher runs: *infer.Model.
type Model interface {
	Info() infer.Info
	Predict(ctx context.Context, g infer.Graph) (infer.Prediction, error)
}

// job is one graph waiting for its batch.
type job struct {
	ctx      context.Context
	graph    infer.Graph
	enqueued time.Time
	// done receives the job's result exactly once.
	done chan result
}

type result struct {
	pred infer.Prediction
	err  error
}

// Batcher is a Model that batches. Predict is safe for concurrent use.
type Batcher struct {
	model Model
	opts  Options
	jobs  chan *job
	// waiting counts Predict calls queued or running in a batch. When every
	// one of them is already in the batch being collected, nobody can join
	// it, so it runs at once instead of waiting out MaxDelay: a lone request
	// pays no batching delay.
	waiting atomic.Int64
	// closing is closed by Close; workers drain and exit. stopped is
	// closed once they have.
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	workers   sync.WaitGroup
}

// New starts a Batcher's workers in front of model.
func New(model Model, opts Options) *Batcher {
	opts = opts.withDefaults()
	b := &Batcher{
		model: model,
		opts:  opts,
		// Enough room that a burst never blocks callers on the channel;
		// the gRPC server bounds concurrent requests anyway.
		jobs:    make(chan *job, 1024),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	b.workers.Add(opts.Workers)
	for range opts.Workers {
		go b.work()
	}
	return b
}

// Info describes the model behind the batcher.
func (b *Batcher) Info() infer.Info { return b.model.Info() }

// Predict runs g, merged with whatever other graphs arrive within MaxDelay.
// Its result equals model.Predict(g) up to float rounding (1e-6).
func (b *Batcher) Predict(ctx context.Context, g infer.Graph) (infer.Prediction, error) {
	if g.NumNodes > b.opts.MaxNodes || g.NumEdges() > b.opts.MaxEdges {
		return b.model.Predict(ctx, g)
	}
	select {
	case <-b.closing:
		return infer.Prediction{}, ErrClosed
	default:
	}
	j := &job{ctx: ctx, graph: g, enqueued: time.Now(), done: make(chan result, 1)}
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		return infer.Prediction{}, ctx.Err()
	case <-b.closing:
		return infer.Prediction{}, ErrClosed
	}
	select {
	case r := <-j.done:
		return r.pred, r.err
	case <-ctx.Done():
		// The worker may still run the job; its result is dropped.
		return infer.Prediction{}, ctx.Err()
	case <-b.stopped:
		// Enqueued as Close began: no worker is left to answer.
		select {
		case r := <-j.done:
			return r.pred, r.err
		default:
			return infer.Prediction{}, ErrClosed
		}
	}
}

// work collects batches and runs them until Close.
func (b *Batcher) work() {
	defer b.workers.Done()
	for {
		var first *job
		select {
		case first = <-b.jobs:
		case <-b.closing:
			b.failQueued()
			return
		}
		b.run(b.collect(first))
	}
}

// collect adds queued jobs to first's batch until a bound is reached,
// MaxDelay has passed since first arrived, or no other request is in the
// batcher to wait for.
func (b *Batcher) collect(first *job) []*job {
	batch := []*job{first}
	nodes, edges := first.graph.NumNodes, first.graph.NumEdges()
	timer := time.NewTimer(b.opts.MaxDelay - time.Since(first.enqueued))
	defer timer.Stop()
	for {
		var j *job
		if b.waiting.Load() <= int64(len(batch)) {
			// Take what is queued, but wait for no one.
			select {
			case j = <-b.jobs:
			default:
				return batch
			}
		} else {
			select {
			case j = <-b.jobs:
			case <-timer.C:
				return batch
			case <-b.closing:
				return batch
			}
		}

		if nodes+j.graph.NumNodes > b.opts.MaxNodes || edges+j.graph.NumEdges() > b.opts.MaxEdges {
			// j does not fit: run the batch so far and start the next with j.
			b.run(batch)
			batch = []*job{j}
			nodes, edges = 0, 0
			timer.Reset(b.opts.MaxDelay - time.Since(j.enqueued))
		} else {
			batch = append(batch, j)
		}
		nodes += j.graph.NumNodes
		edges += j.graph.NumEdges()
	}
}

// run merges the live jobs of a batch, runs the model once and hands each
// job its rows of the output.
func (b *Batcher) run(batch []*job) {
	live := batch[:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- result{err: err}
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	defer func() {
		// A panic must not kill the worker and strand every waiting caller.
		if r := recover(); r != nil {
			err := fmt.Errorf("batch run panicked: %v", r)
			for _, j := range live {
				j.done <- result{err: err}
			}
		}
	}()
	if len(live) == 1 {
		j := live[0]
		p, err := b.model.Predict(j.ctx, j.graph)
		p.Timing.Queue = time.Since(j.enqueued) - p.Timing.Run
		j.done <- result{pred: p, err: err}
		return
	}
	merged := merge(live)
	started := time.Now()
	// The merged run serves several callers, so no single caller's
	// cancellation may stop it; batches are small, so it is short.
	p, err := b.model.Predict(context.Background(), merged)
	if err != nil {
		for _, j := range live {
			j.done <- result{err: err}
		}
		return
	}
	split(p, live, started)
}

// merge builds the disjoint union of the jobs' graphs.
func merge(jobs []*job) infer.Graph {
	var n, e, width int
	for _, j := range jobs {
		n += j.graph.NumNodes
		e += j.graph.NumEdges()
		width += len(j.graph.Features)
	}
	g := infer.Graph{
		NumNodes:  n,
		Features:  make([]float32, 0, width),
		EdgeIndex: make([]int64, 2*e),
	}
	sources, targets := g.EdgeIndex[:e], g.EdgeIndex[e:]
	var offset int64
	var at int
	for _, j := range jobs {
		g.Features = append(g.Features, j.graph.Features...)
		je := j.graph.NumEdges()
		for k, s := range j.graph.EdgeIndex[:je] {
			sources[at+k] = s + offset
		}
		for k, t := range j.graph.EdgeIndex[je:] {
			targets[at+k] = t + offset
		}
		at += je
		offset += int64(j.graph.NumNodes)
	}
	return g
}

// split hands each job the rows of p that belong to its nodes. The slices
// share p's arrays: each job owns a disjoint range.
func split(p infer.Prediction, jobs []*job, started time.Time) {
	c := p.NumClasses
	var at int
	for _, j := range jobs {
		n := j.graph.NumNodes
		j.done <- result{pred: infer.Prediction{
			NumClasses:    c,
			Probabilities: p.Probabilities[at*c : (at+n)*c : (at+n)*c],
			ClassIndex:    p.ClassIndex[at : at+n : at+n],
			Scores:        p.Scores[at : at+n : at+n],
			Timing: infer.Timing{
				Queue:       started.Sub(j.enqueued) + p.Timing.Queue,
				Run:         p.Timing.Run,
				BatchGraphs: len(jobs),
			},
		}}
		at += n
	}
}

// failQueued answers every job still queued at Close.
func (b *Batcher) failQueued() {
	for {
		select {
		case j := <-b.jobs:
			j.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}

// Close stops the workers after their current batch; queued and later
// Predict calls fail. It does not close the model.
func (b *Batcher) Close() error {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.workers.Wait()
		close(b.stopped)
	})
	<-b.stopped
	return nil
}
