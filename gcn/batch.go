package gcn

// Dynamic batching merges concurrent small graphs into one model run.
//
// A batch is the disjoint union of its graphs: features concatenated, edge
// indexes offset by the nodes before them. For a model whose message passing
// stays within connected components (metadata "batchable"), each graph's
// rows of the merged output are exactly its own result, while ONNX Runtime's
// fixed cost per run is paid once per batch instead of once per request.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runner runs one graph: the session (a fake in the batcher's own tests).
type runner interface {
	predict(ctx context.Context, t Tensors) (Prediction, error)
}

// job is one graph waiting for its batch.
type job struct {
	ctx      context.Context
	graph    Tensors
	enqueued time.Time
	// done receives the job's result exactly once, through answer.
	done chan result
	// answered is set by answer; only the worker that took the job reads
	// and writes it.
	answered bool
}

// answer hands j its result unless it already has one: done holds one
// result, so a second send would block the worker forever (when split
// panics after answering some jobs, the recovery answers the rest only).
func (j *job) answer(r result) {
	if j.answered {
		return
	}
	j.answered = true
	j.done <- r
}

type result struct {
	pred Prediction
	err  error
}

// batcher runs graphs on a session, merged. predict is safe for concurrent
// use.
type batcher struct {
	model runner
	opts  BatchOptions
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

// newBatcher starts a batcher's workers in front of model.
func newBatcher(model runner, opts BatchOptions) *batcher {
	opts = opts.withDefaults()
	b := &batcher{
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

// predict runs g, merged with whatever other graphs arrive within MaxDelay.
// Its result equals model.Predict(g) up to float rounding (1e-6).
func (b *batcher) predict(ctx context.Context, g Tensors) (Prediction, error) {
	if g.NumNodes > b.opts.MaxNodes || g.NumEdges() > b.opts.MaxEdges {
		return b.model.predict(ctx, g)
	}
	select {
	case <-b.closing:
		return Prediction{}, ErrClosed
	default:
	}
	j := &job{ctx: ctx, graph: g, enqueued: time.Now(), done: make(chan result, 1)}
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		return Prediction{}, ctx.Err()
	case <-b.closing:
		return Prediction{}, ErrClosed
	}
	select {
	case r := <-j.done:
		return r.pred, r.err
	case <-ctx.Done():
		// The worker may still run the job; its result is dropped.
		return Prediction{}, ctx.Err()
	case <-b.stopped:
		// Enqueued as Close began: no worker is left to answer.
		select {
		case r := <-j.done:
			return r.pred, r.err
		default:
			return Prediction{}, ErrClosed
		}
	}
}

// work collects batches and runs them until Close.
func (b *batcher) work() {
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
func (b *batcher) collect(first *job) []*job {
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
func (b *batcher) run(batch []*job) {
	live := batch[:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.answer(result{err: err})
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
				j.answer(result{err: err}) // skips jobs split already answered
			}
		}
	}()
	if len(live) == 1 {
		j := live[0]
		p, err := b.model.predict(j.ctx, j.graph)
		p.Timing.Queue = time.Since(j.enqueued) - p.Timing.Run
		j.answer(result{pred: p, err: err})
		return
	}
	merged := merge(live)
	started := time.Now()
	// The merged run serves several callers, so no single caller's
	// cancellation may stop it; batches are small, so it is short.
	p, err := b.model.predict(context.Background(), merged)
	if err != nil {
		for _, j := range live {
			j.answer(result{err: err})
		}
		return
	}
	split(p, live, started)
}

// merge builds the disjoint union of the jobs' graphs.
func merge(jobs []*job) Tensors {
	var n, e, width int
	for _, j := range jobs {
		n += j.graph.NumNodes
		e += j.graph.NumEdges()
		width += len(j.graph.Features)
	}
	g := Tensors{
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
func split(p Prediction, jobs []*job, started time.Time) {
	c := p.NumClasses
	var at int
	for _, j := range jobs {
		n := j.graph.NumNodes
		j.answer(result{pred: Prediction{
			NumClasses:    c,
			Probabilities: p.Probabilities[at*c : (at+n)*c : (at+n)*c],
			ClassIndex:    p.ClassIndex[at : at+n : at+n],
			Scores:        p.Scores[at : at+n : at+n],
			Timing: Timing{
				Queue:       started.Sub(j.enqueued) + p.Timing.Queue,
				Run:         p.Timing.Run,
				BatchGraphs: len(jobs),
			},
		}})
		at += n
	}
}

// failQueued answers every job still queued at Close.
func (b *batcher) failQueued() {
	for {
		select {
		case j := <-b.jobs:
			j.answer(result{err: ErrClosed})
		default:
			return
		}
	}
}

// close stops the workers after their current batch; queued and later
// Predict calls fail. It does not close the model.
func (b *batcher) close() {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.workers.Wait()
		close(b.stopped)
	})
	<-b.stopped
}
