package main

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gcnserve/gcnserve/internal/incremental"
)

// The arxiv-sized graph and its state, built once (a few seconds) and
// shared by the benchmarks, which change it as the stream does.
var arxiv struct {
	once sync.Once
	g    *graph
	st   *incremental.State
	rng  *rand.Rand
	err  error
}

func arxivState(b *testing.B) (*graph, *incremental.State, *rand.Rand) {
	b.Helper()
	arxiv.once.Do(func() {
		c := configs[0]
		arxiv.rng = rand.New(rand.NewPCG(1, uint64(c.n)))
		arxiv.g = newGraph(arxiv.rng, c.n, c.m, c.widths[0], gamma)
		arxiv.st, arxiv.err = incremental.New(glorotNetwork(arxiv.rng, c.widths), arxiv.g)
		// Past the first batches, which set up the pending hubs.
		var changes []incremental.Change
		for range 1000 {
			changes = arxiv.g.randomBatch(arxiv.rng, batchSize, changes)
			if arxiv.err == nil {
				arxiv.err = arxiv.st.Apply(changes)
			}
		}
	})
	if arxiv.err != nil {
		b.Fatal(arxiv.err)
	}
	return arxiv.g, arxiv.st, arxiv.rng
}

// BenchmarkApply is one batch of bench-incremental's stream (100 updates:
// 45% edge inserts, 45% deletes, 10% feature rows) on the arxiv-sized
// graph, the graph change included: run it with -cpu 1 for the CPU per
// batch (New splits pushes across GOMAXPROCS workers).
func BenchmarkApply(b *testing.B) {
	g, st, rng := arxivState(b)
	var changes []incremental.Change
	for b.Loop() {
		changes = g.randomBatch(rng, batchSize, changes)
		if err := st.Apply(changes); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkScore scores 10 uniformly drawn nodes of the arxiv-sized graph
// between batches of the stream: one batch per 4 scores, as the 4 scorers
// of bench-incremental see them under the lock (the batches are not
// timed).
func BenchmarkScore(b *testing.B) {
	g, st, rng := arxivState(b)
	C := configs[0].widths[len(configs[0].widths)-1]
	nodes := make([]int32, scoreNodes)
	dst := make([]float32, scoreNodes*C)
	var changes []incremental.Change
	i := 0
	for b.Loop() {
		if i++; i%4 == 0 {
			b.StopTimer()
			changes = g.randomBatch(rng, batchSize, changes)
			if err := st.Apply(changes); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		for j := range nodes {
			nodes[j] = int32(rng.IntN(len(g.adj)))
		}
		if err := st.Probabilities(nodes, dst); err != nil {
			b.Fatal(err)
		}
	}
}
