// Command benchincr measures incremental inference (internal/incremental)
// on synthetic power-law graphs: edge inserts and deletes mixed with 10%
// feature changes stream through State.Apply in batches of 100 for a fixed
// time while 4 goroutines score 10 random nodes each in a closed loop (the
// owner's sync.RWMutex in between, as a stored graph's owner holds it).
// Then it checks exactness (sampled nodes after each of --check-batches
// more batches, and every node at the end, against a float64 recomputation
// from the features) and times scoring 10 nodes by recomputing their
// receptive field from scratch, the path a server without per-layer state
// takes.
//
//	go run ./cmd/benchincr --duration 20s
//
// Graphs (newGraph: Chung-Lu, gamma 2.5, seeded):
//   - arxiv: ogbn-arxiv's size, 169,343 nodes, 1,166,243 edges, 128
//     features, 2-layer GCN 128 -> 64 -> 40 (Glorot-uniform weights);
//   - large: 100,000 nodes, 500,000 edges, 16 features, GCN 16 -> 16 -> 7
//     (the shape of bench/run.sh's large model).
//
// The last line is
//
//	bench-incremental: updates_per_s=X score_p50_ms=Y max_abs_err=Z
//
// with X and Y from the arxiv graph and Z the largest error seen on any.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gcnserve/gcnserve/internal/incremental"
)

type config struct {
	name   string
	n, m   int
	widths []int
}

var configs = []config{
	{"arxiv", 169_343, 1_166_243, []int{128, 64, 40}},
	{"large", 100_000, 500_000, []int{16, 16, 7}},
}

var (
	readers  = 4
	checkAll = true
	// concurrent: the State comes from NewConcurrent and scores run
	// without a lock; otherwise from New, and scores take a sync.RWMutex's
	// read lock, the writer its write lock around the graph change and
	// Apply.
	concurrent = false
	scoreSlots = -1
	coalesce   = 1
	cpuprofile string
	// draws is how many 10-node scores are timed both ways at the end.
	draws = 100
)

const (
	batchSize  = 100
	scoreNodes = 10
	gamma      = 2.5
)

type result struct {
	updatesPerS, scoreP50, scoreP99 float64
	maxErr                          float64
}

func main() {
	duration := flag.Duration("duration", 20*time.Second, "streaming time per graph")
	seed := flag.Uint64("seed", 1, "seed of every random draw")
	only := flag.String("graphs", "arxiv,large", "graphs to run, comma-separated (arxiv, large)")
	checkBatches := flag.Int("check-batches", 100, "batches after the timed phase, each followed by a sampled exactness check")
	lazy := flag.Int("lazy-degree", incremental.DefaultLazyDegree, "State.SetLazyDegree")
	flag.IntVar(&readers, "readers", readers, "goroutines scoring while the stream runs")
	flag.IntVar(&draws, "draws", draws, "10-node scores timed both from the state and by recomputing their receptive field at the end (0: none)")
	flag.BoolVar(&checkAll, "check-all", true, "compare every node with a recomputation at the end")
	flag.IntVar(&coalesce, "coalesce", 1, "at most this many batches in one Apply: the writer adds arriving batches while scores still read the view it needs (State.Ready)")
	flag.IntVar(&scoreSlots, "score-slots", -1, "State.SetMaxConcurrentScores (-1: the engine's default, GOMAXPROCS-1; 0: no limit)")
	flag.BoolVar(&concurrent, "concurrent", false, "incremental.NewConcurrent: scores read the published view without a lock (default: New, scores under a read lock)")
	flag.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the first graph's two streaming phases to this file")
	flag.Parse()
	fmt.Printf("benchincr: GOMAXPROCS=%d, %s, batches of %d, %d readers scoring %d nodes, %v per graph, seed %d, lazy degree %d, concurrent %v, coalesce %d, score slots %d\n",
		runtime.GOMAXPROCS(0), runtime.Version(), batchSize, readers, scoreNodes, *duration, *seed, *lazy, concurrent, coalesce, scoreSlots)
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average at start: %s", la)
	}
	var first *result
	worst := 0.0
	for _, c := range configs {
		if !slices.Contains(strings.Split(*only, ","), c.name) {
			continue
		}
		r, err := run(c, *seed, *duration, *checkBatches, *lazy)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchincr: %s: %v\n", c.name, err)
			os.Exit(1)
		}
		if first == nil {
			first = &r
		}
		worst = max(worst, r.maxErr)
	}
	if first == nil {
		fmt.Fprintf(os.Stderr, "benchincr: no graph named in --graphs %q\n", *only)
		os.Exit(2)
	}
	fmt.Printf("bench-incremental: updates_per_s=%.0f score_p50_ms=%.3f max_abs_err=%.2g\n", first.updatesPerS, first.scoreP50, worst)
	if worst > 1e-5 {
		os.Exit(1)
	}
}

func run(c config, seed uint64, duration time.Duration, checkBatches, lazy int) (result, error) {
	var res result
	rng := rand.New(rand.NewPCG(seed, uint64(c.n)))
	t0 := time.Now()
	g := newGraph(rng, c.n, c.m, c.widths[0], gamma)
	net := glorotNetwork(rng, c.widths)
	maxDeg, sum, sum2 := 0, 0.0, 0.0
	for _, a := range g.adj {
		d := float64(len(a))
		maxDeg = max(maxDeg, len(a))
		sum += d
		sum2 += d * d
	}
	fmt.Printf("\n== %s: %d nodes, %d edges, %d features, GCN %v; max degree %d, mean %.1f, mean degree at an edge's end %.0f (generated in %v)\n",
		c.name, c.n, c.m, c.widths[0], c.widths, maxDeg, sum/float64(c.n), sum2/sum, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	newState := incremental.New
	if concurrent {
		newState = incremental.NewConcurrent
	}
	st, err := newState(net, g)
	if err != nil {
		return res, err
	}
	st.SetLazyDegree(lazy)
	if scoreSlots >= 0 {
		st.SetMaxConcurrentScores(scoreSlots)
	}
	fmt.Printf("New: %v, state %.1f MB (%.0f bytes per node)\n", time.Since(t0).Round(time.Millisecond),
		float64(st.Bytes())/1e6, float64(st.Bytes())/float64(c.n))

	// Writer alone first (the CPU per update, independent of how many
	// cores the shared machine gives us), then with the readers.
	C := c.widths[len(c.widths)-1]
	st0a := st.Stats()
	stopProfile := func() {}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return res, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return res, err
		}
		cpuprofile = "" // the first graph only
		var once sync.Once
		stopProfile = func() {
			once.Do(func() {
				pprof.StopCPUProfile()
				f.Close()
			})
		}
		defer stopProfile()
	}
	alone, err := stream(st, g, rng, c.n, C, 0, duration/2, seed)
	if err != nil {
		return res, err
	}
	fmt.Printf("stream alone: %d updates in %v: %.0f updates/s (%.3f ms per batch), process CPU %.2f cores: %.0f updates per CPU-second; %.1f sum rows copied per update\n",
		alone.updates, alone.elapsed.Round(time.Millisecond), alone.rate(), ms(alone.elapsed)/float64(alone.batches),
		alone.cores(), float64(alone.updates)/alone.cpu.Seconds(), float64(st.Stats().RowsCopied-st0a.RowsCopied)/float64(alone.updates))
	st0 := st.Stats()
	mixed, err := stream(st, g, rng, c.n, C, readers, duration, seed)
	if err != nil {
		return res, err
	}
	st1 := st.Stats()
	stopProfile() // the profile covers the streaming phases only
	all := mixed.lat
	res.updatesPerS = mixed.rate()
	res.scoreP50 = ms(all[len(all)/2])
	res.scoreP99 = ms(all[len(all)*99/100])
	fmt.Printf("stream with %d readers: %d updates in %d batches (%d Applies) in %v: %.0f updates/s (Apply %.3f ms per batch); process CPU %.2f cores: %.0f updates per CPU-second (readers' CPU included)\n",
		readers, mixed.updates, mixed.batches, mixed.applies, mixed.elapsed.Round(time.Millisecond), res.updatesPerS,
		ms(mixed.apply)/float64(mixed.batches), mixed.cores(), float64(mixed.updates)/mixed.cpu.Seconds())
	fmt.Printf("scores meanwhile: %d of %d nodes, %.0f/s: p50 %.3f ms, p99 %.3f ms, max %.3f ms (lock wait included); Apply waited for scores leaving the view %d times, %v in all\n",
		len(all), scoreNodes, float64(len(all))/mixed.elapsed.Seconds(), res.scoreP50, res.scoreP99, ms(all[len(all)-1]), st1.DrainWaits-st0.DrainWaits, (st1.Drained - st0.Drained).Round(time.Millisecond))
	wk := mixed.work
	fmt.Printf("scores meanwhile without the lock wait: p50 %.3f ms, p99 %.3f ms\n", ms(wk[len(wk)/2]), ms(wk[len(wk)*99/100]))
	fmt.Printf("state after the stream: %.1f MB (%.0f bytes per node; pending hubs and cached pending sums included)\n",
		float64(st.Bytes())/1e6, float64(st.Bytes())/float64(c.n))
	updates := alone.updates + mixed.updates
	var changes []incremental.Change

	// Exactness: sampled nodes after each batch, then every node.
	rc := newRecompute(net, g)
	compare := func(nodes []int32) (float64, error) {
		got := make([]float32, len(nodes)*C)
		if err := st.Probabilities(nodes, got); err != nil {
			return 0, err
		}
		want := rc.probabilities(nodes)
		worst := 0.0
		for i := range nodes {
			for j := range C {
				worst = max(worst, math.Abs(float64(got[i*C+j])-want[i][j]))
			}
		}
		return worst, nil
	}
	for range checkBatches {
		changes = g.randomBatch(rng, batchSize, changes)
		if err := st.Apply(changes); err != nil {
			return res, err
		}
		sample := []int32{}
		for i := range 5 {
			sample = append(sample, int32(rng.IntN(c.n)), changes[i*len(changes)/5].U)
		}
		e, err := compare(sample)
		if err != nil {
			return res, err
		}
		res.maxErr = max(res.maxErr, e)
	}
	sampled := res.maxErr
	everyone := make([]int32, c.n)
	for i := range everyone {
		everyone[i] = int32(i)
	}
	t0 = time.Now()
	e := math.NaN()
	if checkAll {
		var err error
		if e, err = compare(everyone); err != nil {
			return res, err
		}
		res.maxErr = max(res.maxErr, e)
	}
	fmt.Printf("exact: max abs error %.2g on 10 sampled nodes after each of %d more batches, %.2g on all %d nodes at the end (after %d updates; comparison took %v)\n",
		sampled, checkBatches, e, c.n, updates+checkBatches*batchSize, time.Since(t0).Round(time.Millisecond))

	// Scoring 10 random nodes: stored state vs recomputing their receptive
	// field from the features, one goroutine, no writer.
	var inc, rec []time.Duration
	nodes := make([]int32, scoreNodes)
	dst := make([]float32, scoreNodes*C)
	if draws == 0 {
		return res, nil
	}
	for range draws {
		for i := range nodes {
			nodes[i] = int32(rng.IntN(c.n))
		}
		t := time.Now()
		if err := st.Probabilities(nodes, dst); err != nil {
			return res, err
		}
		inc = append(inc, time.Since(t))
		t = time.Now()
		rc.probabilities(nodes)
		rec = append(rec, time.Since(t))
	}
	slices.Sort(inc)
	slices.Sort(rec)
	fmt.Printf("score of %d nodes alone, %d draws: stored state p50 %.3f ms, mean %.3f ms; receptive field recomputed p50 %.2f ms, mean %.2f ms: speed-up %.0fx (p50), %.0fx (mean)\n",
		scoreNodes, draws, ms(inc[draws/2]), ms(mean(inc)), ms(rec[draws/2]), ms(mean(rec)), float64(rec[draws/2])/float64(inc[draws/2]), float64(mean(rec))/float64(mean(inc)))
	fmt.Printf("peak RSS so far %.0f MB\n", float64(vmHWM())/1e6)
	return res, nil
}

// streamed is what one streaming phase measured.
type streamed struct {
	updates, batches int
	applies          int // Apply calls (batches coalesced with --coalesce)
	elapsed, cpu     time.Duration
	apply            time.Duration   // inside Apply
	lat              []time.Duration // score latencies, sorted
	work             []time.Duration // the same without the wait for the read lock, sorted
}

func (s streamed) rate() float64  { return float64(s.updates) / s.elapsed.Seconds() }
func (s streamed) cores() float64 { return s.cpu.Seconds() / s.elapsed.Seconds() }

// stream runs the writer (write lock, change the graph, Apply, unlock) for
// duration while readers goroutines score 10 random nodes in a closed loop
// under the read lock.
func stream(st *incremental.State, g *graph, rng *rand.Rand, n, C, readers int, duration time.Duration, seed uint64) (streamed, error) {
	var out streamed
	var mu sync.RWMutex
	var stop atomic.Bool
	lat := make([][]time.Duration, readers)
	work := make([][]time.Duration, readers) // without the wait for the lock
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(seed, uint64(100+r)))
			nodes := make([]int32, scoreNodes)
			dst := make([]float32, scoreNodes*C)
			for !stop.Load() {
				for i := range nodes {
					nodes[i] = int32(rr.IntN(n))
				}
				t := time.Now()
				if !concurrent {
					mu.RLock()
				}
				locked := time.Now()
				err := st.Probabilities(nodes, dst)
				work[r] = append(work[r], time.Since(locked))
				if !concurrent {
					mu.RUnlock()
				}
				lat[r] = append(lat[r], time.Since(t))
				if err != nil {
					errs[r] = err
					return
				}
			}
		}()
	}
	var changes []incremental.Change
	cpu0 := cpuTime()
	start := time.Now()
	var err error
	var one []incremental.Change
	for time.Since(start) < duration {
		mu.Lock()
		// Batches of batchSize arrive; with --coalesce k the writer adds
		// the next batch to the pending ones instead of waiting for scores
		// to leave the view Apply writes (State.Ready), up to k batches.
		changes = changes[:0]
		for {
			one = g.randomBatch(rng, batchSize, one)
			changes = append(changes, one...)
			out.batches++
			if len(changes) >= coalesce*batchSize || st.Ready() {
				break
			}
		}
		t := time.Now()
		err = st.Apply(changes)
		out.apply += time.Since(t)
		out.applies++
		mu.Unlock()
		if err != nil {
			break
		}
		out.updates += len(changes)
	}
	out.elapsed = time.Since(start)
	out.cpu = cpuTime() - cpu0
	stop.Store(true)
	wg.Wait()
	for r, l := range lat {
		out.lat = append(out.lat, l...)
		out.work = append(out.work, work[r]...)
	}
	slices.Sort(out.lat)
	slices.Sort(out.work)
	if len(out.work) == 0 {
		out.work = []time.Duration{0}
	}
	if len(out.lat) == 0 {
		out.lat = []time.Duration{0}
	}
	return out, errors.Join(append(errs, err)...)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func mean(d []time.Duration) time.Duration {
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s / time.Duration(len(d))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is the process's peak resident set in bytes (0 if unknown).
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}
