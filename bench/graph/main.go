// Command graph is the load program of `make bench-graph` (bench/graph.sh):
// against a running gcnserve (its pid given, for CPU time from /proc) it
// loads a synthetic stored graph, measures ScoreNodes of a few random nodes
// against a full ProcessGraph of the same graph, then applies deltas of
// edge changes while scores run concurrently, checks that the scores are
// exact, and prints one line per figure and last:
//
//	bench-graph: score_p50_ms=X score_cpu_vs_full=Y deltas_per_s=Z exact=true|false
//
// deltas_per_s counts edge changes applied per second.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/client"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-graph:", err)
		os.Exit(1)
	}
}

type config struct {
	addr                   string
	pid                    int
	nodes, edges, features int
	asked                  int
	scores                 int
	fulls                  int
	duration               time.Duration
	concurrency            int
	batch                  int
	writers                int
}

func run() error {
	var c config
	flag.StringVar(&c.addr, "addr", "localhost:9999", "gcnserve's address")
	flag.IntVar(&c.pid, "pid", 0, "gcnserve's process id (CPU time from /proc)")
	flag.IntVar(&c.nodes, "nodes", 100_000, "graph nodes")
	flag.IntVar(&c.edges, "edges", 500_000, "graph edges")
	flag.IntVar(&c.features, "features", 16, "features per node (the model's)")
	flag.IntVar(&c.asked, "asked", 10, "nodes per ScoreNodes")
	flag.IntVar(&c.scores, "scores", 300, "sequential ScoreNodes calls for p50 and CPU")
	flag.IntVar(&c.fulls, "fulls", 3, "full ProcessGraph calls for the CPU baseline")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long deltas and concurrent scores run")
	flag.IntVar(&c.concurrency, "c", 8, "concurrent scorers during the delta phase")
	flag.IntVar(&c.batch, "batch", 100, "edge changes per delta")
	flag.IntVar(&c.writers, "writers", 2, "concurrent delta writers")
	flag.Parse()
	if c.pid <= 0 {
		return fmt.Errorf("--pid is required")
	}

	cl, err := client.Dial(c.addr, client.WithMaxSendBytes(256<<20), client.WithMaxReceiveBytes(256<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	g := graphwire.SyntheticGraph(c.nodes, c.edges, c.features, 42)
	raw := int64(0)
	for _, n := range g.Nodes {
		raw += int64(len(n.Id)) + 4*int64(c.features)
	}
	raw += 8 * int64(c.edges)

	rssBefore := rss(c.pid)
	t0 := time.Now()
	info, err := cl.LoadGraph(ctx, "bench", g, nil)
	if err != nil {
		return fmt.Errorf("LoadGraph: %w", err)
	}
	fmt.Printf("load: %d nodes, %d edges, %d features in %v; counted %d B (the graph, plus its per-layer state in incremental mode) = %.2fx raw %d B (ids, 4F per node, two int32 per edge); server RSS +%d B\n",
		info.Nodes, info.Edges, c.features, time.Since(t0).Round(time.Millisecond), info.Bytes, float64(info.Bytes)/float64(raw), raw, rss(c.pid)-rssBefore)

	// GetGraph builds the graph's scorer for the served model version and
	// says which mode scores run in (incremental: per-layer state built
	// now; recompute: nothing to build).
	t0 = time.Now()
	gi, err := cl.GetGraph(ctx, "bench")
	if err != nil {
		return fmt.Errorf("GetGraph: %w", err)
	}
	fmt.Printf("mode: %s (scorer ready in %v; stored graph with its state %d B; server RSS +%d B since before the load)\n",
		gi.Mode, time.Since(t0).Round(time.Millisecond), gi.Bytes, rss(c.pid)-rssBefore)

	// Full-graph baseline: ProcessGraph of the same graph, server CPU.
	reqBytes := len(mustMarshal(g))
	var fullCPU []time.Duration
	var fullLat []time.Duration
	for range c.fulls {
		cpu0, t := cpuTime(c.pid), time.Now()
		if _, err := cl.ProcessGraph(ctx, g); err != nil {
			return fmt.Errorf("ProcessGraph: %w", err)
		}
		fullLat = append(fullLat, time.Since(t))
		fullCPU = append(fullCPU, cpuTime(c.pid)-cpu0)
	}
	fullCPUMed := median(fullCPU)
	fmt.Printf("full ProcessGraph: request %d B, p50 %v, server CPU %v per call (median of %d)\n",
		reqBytes, median(fullLat).Round(time.Microsecond), fullCPUMed, c.fulls)

	// Scores alone.
	r := rand.New(rand.NewPCG(7, 7))
	ask := func(r *rand.Rand) *gcnpb.ScoreRequest {
		req := &gcnpb.ScoreRequest{GraphId: "bench"}
		for range c.asked {
			req.NodeIds = append(req.NodeIds, "n"+strconv.Itoa(r.IntN(c.nodes)))
		}
		return req
	}
	for range 20 { // warm-up
		if _, err := cl.ScoreNodes(ctx, ask(r)); err != nil {
			return err
		}
	}
	var lat []time.Duration
	cpu0 := cpuTime(c.pid)
	var scoreReqBytes int
	for range c.scores {
		req := ask(r)
		scoreReqBytes = len(mustMarshal(req))
		t := time.Now()
		if _, err := cl.ScoreNodes(ctx, req); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	scoreCPU := (cpuTime(c.pid) - cpu0) / time.Duration(c.scores)
	p50 := median(lat)
	cpuRatio := float64(scoreCPU) / float64(fullCPUMed)
	fmt.Printf("score %d random nodes: request %d B, p50 %v, p99 %v, server CPU %v per score = %.4f of a full ProcessGraph\n",
		c.asked, scoreReqBytes, p50.Round(time.Microsecond), percentile(lat, 0.99).Round(time.Microsecond), scoreCPU, cpuRatio)

	// Deltas (edge adds and removes) while scores run at c.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var scored, changes atomic.Int64
	errs := make(chan error, c.concurrency+c.writers)
	for i := range c.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 99))
			for !stop.Load() {
				if _, err := cl.ScoreNodes(ctx, ask(r)); err != nil {
					errs <- fmt.Errorf("score during deltas: %w", err)
					return
				}
				scored.Add(1)
			}
		}()
	}
	var dlat []time.Duration
	var dmu sync.Mutex
	start := time.Now()
	for w := range c.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1234))
			// Each delta adds batch/2 edges and removes batch/2 edges this
			// writer added before, so every removal names an edge that exists.
			var mine []*gcnpb.Edge
			for !stop.Load() {
				d := &gcnpb.DeltaRequest{GraphId: "bench"}
				for range c.batch / 2 {
					e := &gcnpb.Edge{SourceId: "n" + strconv.Itoa(r.IntN(c.nodes)), TargetId: "n" + strconv.Itoa(r.IntN(c.nodes))}
					d.AddEdges = append(d.AddEdges, e)
				}
				for len(d.RemoveEdges) < c.batch/2 && len(mine) > 0 {
					k := r.IntN(len(mine))
					d.RemoveEdges = append(d.RemoveEdges, mine[k])
					mine[k] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
				}
				t := time.Now()
				if _, err := cl.ApplyDelta(ctx, d); err != nil {
					errs <- fmt.Errorf("delta: %w", err)
					return
				}
				dmu.Lock()
				dlat = append(dlat, time.Since(t))
				dmu.Unlock()
				changes.Add(int64(len(d.AddEdges) + len(d.RemoveEdges)))
				mine = append(mine, d.AddEdges...)
			}
		}()
	}
	time.Sleep(c.duration)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		return err
	}
	deltasPerS := float64(changes.Load()) / elapsed.Seconds()
	fmt.Printf("deltas: %d edge changes in %v by %d writers (batches of %d) = %.0f changes/s, delta p50 %v p99 %v; %d concurrent scores at c=%d (%.0f/s)\n",
		changes.Load(), elapsed.Round(time.Millisecond), c.writers, c.batch, deltasPerS,
		median(dlat).Round(time.Microsecond), percentile(dlat, 0.99).Round(time.Microsecond),
		scored.Load(), c.concurrency, float64(scored.Load())/elapsed.Seconds())

	// Exact: scores of random nodes equal ProcessGraph on the exported graph.
	whole, gi, err := cl.ExportGraph(ctx, "bench")
	if err != nil {
		return err
	}
	ref, err := cl.ProcessGraph(ctx, whole)
	if err != nil {
		return err
	}
	exact := true
	var maxErr float64
	for range 20 {
		req := ask(r)
		req.MinRevision = gi.Revision
		res, err := cl.ScoreNodes(ctx, req)
		if err != nil {
			return err
		}
		if res.Revision != gi.Revision {
			return fmt.Errorf("graph moved from revision %d to %d during the check", gi.Revision, res.Revision)
		}
		for id, s := range res.NodeScores {
			d := math.Abs(float64(s - ref.NodeScores[id]))
			maxErr = max(maxErr, d)
			if d > 1e-5 {
				exact = false
			}
		}
	}
	fmt.Printf("exact: 200 scores at revision %d against ProcessGraph of the exported graph, max |diff| %.2g\n", gi.Revision, maxErr)
	fmt.Printf("bench-graph: score_p50_ms=%.3f score_cpu_vs_full=%.4f deltas_per_s=%.0f exact=%v\n",
		float64(p50.Microseconds())/1000, cpuRatio, deltasPerS, exact)
	return nil
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func median(d []time.Duration) time.Duration { return percentile(d, 0.5) }

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// cpuTime is the process's user+system CPU time from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// rss is the process's resident set size from /proc/PID/status.
func rss(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
