// Command loadgen is a closed-loop load generator for GCNService.ProcessGraph.
//
// It builds one request (graphwire.SyntheticGraph, or a serialized
// GraphData file), marshals it once, and sends those same bytes on every
// call through a pass-through codec, so the client costs almost nothing per
// call and the numbers describe the server. Each of --concurrency workers
// has its own connection and sends its next request as soon as the previous
// answer arrives.
//
//	loadgen --addr 127.0.0.1:9999 --nodes 2708 --edges 10556 --features 32 \
//	        --concurrency 4 --warmup 2s --duration 10s --pid $SERVER_PID
//
// It reports OK responses, errors by status code, requests per second,
// latency percentiles, and with --pid the server's CPU time per OK request
// (utime+stime from /proc/<pid>/stat over the measured window) and peak RSS
// (VmHWM). It also reports its own CPU time per request: when that
// approaches the server's, the client is what limits the rate.
//
// Before the load, one call's response is decoded and checked (one score
// per request node, each in [0, 1]); --save-response and --expect compare
// the scores of two servers on the same request.
//
//	loadgen --addr 127.0.0.1:9999 --wait-serving 30s
//
// waits until grpc.health.v1 reports SERVING, prints the Unix time in
// nanoseconds at which it did, and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// processGraph is the tutorial's method name (gcn.proto has no package).
const processGraph = "/GCNService/ProcessGraph"

// maxMessage bounds requests and responses both ways: gcnserve's default
// request limit, which fits a Cora-sized request with dense features.
const maxMessage = 64 << 20

type config struct {
	addr        string
	concurrency int
	duration    time.Duration
	requests    int
	warmup      time.Duration
	timeout     time.Duration

	nodes, edges, features int
	seed                   int64
	payloadFile            string
	writePayload           string

	pid          int
	jsonOut      bool
	label        string
	saveResponse string
	expect       string
	tolerance    float64
	waitServing  time.Duration
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:9999", "server address")
	fs.IntVar(&c.concurrency, "concurrency", 1, "workers, each with its own connection and one request in flight")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time; workers start no request after it (0: until --requests)")
	fs.IntVar(&c.requests, "requests", 0, "stop the measurement after this many requests (0: no limit)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before the measurement; every connection carries at least one request")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "deadline of one call")
	fs.IntVar(&c.nodes, "nodes", 34, "synthetic request: nodes")
	fs.IntVar(&c.edges, "edges", 78, "synthetic request: edges")
	fs.IntVar(&c.features, "features", 34, "synthetic request: features per node")
	fs.Int64Var(&c.seed, "seed", 1, "synthetic request: generator seed")
	fs.StringVar(&c.payloadFile, "payload", "", "send this serialized GraphData file instead of a synthetic request")
	fs.StringVar(&c.writePayload, "write-payload", "", "write the serialized request to this file and exit")
	fs.IntVar(&c.pid, "pid", 0, "server process to sample for CPU time and peak RSS (0: do not sample)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the result as one JSON line")
	fs.StringVar(&c.label, "label", "", "free text copied into the result (e.g. the server's name)")
	fs.StringVar(&c.saveResponse, "save-response", "", "write the checked response (serialized GCNResult) to this file")
	fs.StringVar(&c.expect, "expect", "", "fail unless the checked response's scores match this saved GCNResult within --tolerance")
	fs.Float64Var(&c.tolerance, "tolerance", 1e-4, "largest score difference --expect accepts")
	fs.DurationVar(&c.waitServing, "wait-serving", 0, "only wait (this long at most) for health SERVING, print the Unix time in ns, exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.waitServing > 0 {
		at, err := waitServing(c.addr, c.waitServing)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, at.UnixNano())
		return nil
	}
	if c.concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	if c.duration <= 0 && c.requests <= 0 {
		return errors.New("need --duration or --requests")
	}

	graph, payload, err := buildPayload(c)
	if err != nil {
		return err
	}
	if c.writePayload != "" {
		return os.WriteFile(c.writePayload, payload, 0o644)
	}
	res, err := runLoad(c, graph, payload)
	if err != nil {
		return err
	}
	if c.jsonOut {
		return json.NewEncoder(stdout).Encode(res)
	}
	res.print(stdout)
	return nil
}

// buildPayload returns the request and its wire bytes, marshalled once.
func buildPayload(c config) (*gcnpb.GraphData, []byte, error) {
	if c.payloadFile != "" {
		data, err := os.ReadFile(c.payloadFile)
		if err != nil {
			return nil, nil, err
		}
		g := &gcnpb.GraphData{}
		if err := proto.Unmarshal(data, g); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", c.payloadFile, err)
		}
		return g, data, nil
	}
	g := graphwire.SyntheticGraph(c.nodes, c.edges, c.features, c.seed)
	data, err := proto.Marshal(g)
	return g, data, err
}

// Result is one load run. Times are in milliseconds; the server fields are
// -1 when no --pid was given.
type Result struct {
	Label        string         `json:"label,omitempty"`
	Addr         string         `json:"addr"`
	Nodes        int            `json:"nodes"`
	Edges        int            `json:"edges"`
	Features     int            `json:"features"`
	RequestBytes int            `json:"request_bytes"`
	Concurrency  int            `json:"concurrency"`
	Warmup       string         `json:"warmup"`
	Seconds      float64        `json:"seconds"`
	OK           int            `json:"ok"`
	Errors       map[string]int `json:"errors"`
	RPS          float64        `json:"rps"`
	P50          float64        `json:"p50_ms"`
	P90          float64        `json:"p90_ms"`
	P99          float64        `json:"p99_ms"`
	Max          float64        `json:"max_ms"`
	// ServerCPUPerOK is the server's utime+stime over the measured window
	// divided by OK responses.
	ServerCPUPerOK float64 `json:"server_cpu_ms_per_req"`
	// ServerPeakRSSMB is VmHWM at the end of the run: the peak since the
	// server started, warm-up included.
	ServerPeakRSSMB float64 `json:"server_peak_rss_mb"`
	// ClientCPUPerOK is this process's CPU time per OK response.
	ClientCPUPerOK float64 `json:"client_cpu_ms_per_req"`
	// MachineBusyCores is the average number of cores busy (all processes)
	// over the measured window, out of NumCPU.
	MachineBusyCores float64 `json:"machine_busy_cores"`
	NumCPU           int     `json:"num_cpu"`
	// ScoreMaxDiff is the largest score difference from --expect (-1: none).
	ScoreMaxDiff float64 `json:"score_max_diff"`
}

func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "%s%d nodes, %d edges, %d features (%d bytes), concurrency %d, %.1fs\n",
		labelPrefix(r.Label), r.Nodes, r.Edges, r.Features, r.RequestBytes, r.Concurrency, r.Seconds)
	fmt.Fprintf(w, "  ok %d, errors %v, %.1f rps\n", r.OK, r.Errors, r.RPS)
	fmt.Fprintf(w, "  latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.P50, r.P90, r.P99, r.Max)
	if r.ServerCPUPerOK >= 0 {
		fmt.Fprintf(w, "  server: %.3f ms CPU per request, peak RSS %.0f MB\n", r.ServerCPUPerOK, r.ServerPeakRSSMB)
	}
	fmt.Fprintf(w, "  client: %.3f ms CPU per request\n", r.ClientCPUPerOK)
	fmt.Fprintf(w, "  machine: %.2f of %d cores busy (all processes)\n", r.MachineBusyCores, r.NumCPU)
	if r.ScoreMaxDiff >= 0 {
		fmt.Fprintf(w, "  scores match --expect: max difference %.2g\n", r.ScoreMaxDiff)
	}
}

func labelPrefix(l string) string {
	if l == "" {
		return ""
	}
	return l + ": "
}

// runLoad checks one response, warms up, then measures.
func runLoad(c config, graph *gcnpb.GraphData, payload []byte) (*Result, error) {
	// One connection per worker: gRPC multiplexes calls over a connection,
	// but each connection has one reader and one writer goroutine and one
	// HTTP/2 flow-control window, so large requests from many workers would
	// queue behind each other in the client. Separate connections behave
	// like separate clients, which is what a server behind a load balancer
	// sees, and keep the client out of the measurement.
	conns := make([]*grpc.ClientConn, c.concurrency)
	for i := range conns {
		cc, err := grpc.NewClient(c.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		conns[i] = cc
	}

	res := &Result{
		Label: c.label, Addr: c.addr, Nodes: len(graph.GetNodes()), Edges: len(graph.GetEdges()),
		RequestBytes: len(payload), Concurrency: c.concurrency, Warmup: c.warmup.String(), Errors: map[string]int{}, NumCPU: runtime.NumCPU(),
		ServerCPUPerOK: -1, ServerPeakRSSMB: -1, ScoreMaxDiff: -1,
	}
	if len(graph.GetNodes()) > 0 {
		res.Features = len(graph.GetNodes()[0].GetFeatures())
	}
	diff, err := checkResponse(c, conns[0], graph, payload)
	if err != nil {
		return nil, err
	}
	res.ScoreMaxDiff = diff

	if c.warmup > 0 {
		phase(c, conns, payload, time.Now().Add(c.warmup), 0, true)
	}

	cpu0, err := sampleServerCPU(c.pid)
	if err != nil {
		return nil, err
	}
	self0 := selfCPU()
	busy0, busyErr := machineBusy()
	start := time.Now()
	var deadline time.Time
	if c.duration > 0 {
		deadline = start.Add(c.duration)
	}
	workers := phase(c, conns, payload, deadline, c.requests, false)
	elapsed := time.Since(start)
	self1 := selfCPU()
	busy1, busyErr1 := machineBusy()
	if busyErr == nil && busyErr1 == nil {
		res.MachineBusyCores = float64(busy1-busy0) / float64(elapsed)
	}
	cpu1, err := sampleServerCPU(c.pid)
	if err != nil {
		return nil, err
	}

	var lat []time.Duration
	for _, w := range workers {
		lat = append(lat, w.latencies...)
		for code, n := range w.errors {
			res.Errors[code.String()] += n
		}
	}
	res.OK = len(lat)
	res.Seconds = elapsed.Seconds()
	res.RPS = float64(res.OK) / elapsed.Seconds()
	slices.Sort(lat)
	res.P50, res.P90, res.P99 = percentile(lat, 50), percentile(lat, 90), percentile(lat, 99)
	if len(lat) > 0 {
		res.Max = ms(lat[len(lat)-1])
	}
	if res.OK > 0 {
		res.ClientCPUPerOK = ms(self1-self0) / float64(res.OK)
		if c.pid > 0 {
			res.ServerCPUPerOK = ms(cpu1-cpu0) / float64(res.OK)
		}
	}
	if c.pid > 0 {
		rss, err := peakRSS(c.pid)
		if err != nil {
			return nil, err
		}
		res.ServerPeakRSSMB = float64(rss) / (1 << 20)
	}
	return res, nil
}

func sampleServerCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, nil
	}
	return processCPU(pid)
}

// workerStats is what one worker saw: the latency of each OK call and the
// status codes of the failed ones.
type workerStats struct {
	latencies []time.Duration
	errors    map[codes.Code]int
}

// phase runs every worker in a closed loop until deadline (zero: none) or
// until limit requests have started (0: no limit), and returns when every
// worker's last call has finished, so the measured window holds all the
// work its requests caused. In warm-up, each worker sends at least once
// (worker 0 already has: checkResponse used its connection), so a server
// that takes seconds per request is not warmed up for longer than needed.
func phase(c config, conns []*grpc.ClientConn, payload []byte, deadline time.Time, limit int, warmup bool) []workerStats {
	var started atomic.Int64
	stats := make([]workerStats, len(conns))
	var wg sync.WaitGroup
	for i, cc := range conns {
		wg.Go(func() {
			st := &stats[i]
			st.errors = map[codes.Code]int{}
			for n := 0; ; n++ {
				if !(warmup && n == 0 && i > 0) && !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				if limit > 0 && started.Add(1) > int64(limit) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
				var resp responseSize
				t0 := time.Now()
				err := cc.Invoke(ctx, processGraph, &payload, &resp, grpc.ForceCodecV2(rawCodec{}))
				d := time.Since(t0)
				cancel()
				if err != nil {
					st.errors[status.Code(err)]++
					continue
				}
				st.latencies = append(st.latencies, d)
			}
		})
	}
	wg.Wait()
	return stats
}

// checkResponse sends the request once, decodes the answer and checks it:
// one score per node, each in [0, 1]. With --expect it returns the largest
// difference from the saved scores (and fails above --tolerance), else -1.
func checkResponse(c config, cc *grpc.ClientConn, graph *gcnpb.GraphData, payload []byte) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var raw []byte
	if err := cc.Invoke(ctx, processGraph, &payload, &raw, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return 0, fmt.Errorf("first request: %w", err)
	}
	got := &gcnpb.GCNResult{}
	if err := proto.Unmarshal(raw, got); err != nil {
		return 0, fmt.Errorf("first response: %w", err)
	}
	if n, want := len(got.GetNodeScores()), len(graph.GetNodes()); n != want {
		return 0, fmt.Errorf("first response: %d node scores, want %d (one per request node)", n, want)
	}
	for _, node := range graph.GetNodes() {
		s, ok := got.GetNodeScores()[node.GetId()]
		if !ok {
			return 0, fmt.Errorf("first response: no score for node %q", node.GetId())
		}
		if !(s >= 0 && s <= 1) {
			return 0, fmt.Errorf("first response: node %q scores %v, want a probability in [0, 1]", node.GetId(), s)
		}
	}
	if c.saveResponse != "" {
		if err := os.WriteFile(c.saveResponse, raw, 0o644); err != nil {
			return 0, err
		}
	}
	if c.expect == "" {
		return -1, nil
	}
	data, err := os.ReadFile(c.expect)
	if err != nil {
		return 0, err
	}
	want := &gcnpb.GCNResult{}
	if err := proto.Unmarshal(data, want); err != nil {
		return 0, fmt.Errorf("%s: %w", c.expect, err)
	}
	maxDiff, worst := 0.0, ""
	for id, w := range want.GetNodeScores() {
		g, ok := got.GetNodeScores()[id]
		if !ok {
			return 0, fmt.Errorf("--expect %s: node %q has no score in the response", c.expect, id)
		}
		if d := math.Abs(float64(g) - float64(w)); d > maxDiff || math.IsNaN(d) {
			maxDiff, worst = d, id
		}
	}
	if len(want.GetNodeScores()) != len(got.GetNodeScores()) || !(maxDiff <= c.tolerance) {
		return maxDiff, fmt.Errorf("--expect %s: scores differ: node %q by %.3g (tolerance %.3g; %d expected scores, %d received)",
			c.expect, worst, maxDiff, c.tolerance, len(want.GetNodeScores()), len(got.GetNodeScores()))
	}
	return maxDiff, nil
}

// percentile is the nearest-rank p-th percentile of sorted, in ms.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return ms(sorted[max(i, 0)])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// waitServing polls grpc.health.v1 until the server reports SERVING and
// returns when it first did. Reconnection backoff is cut to milliseconds so
// the time measures the server's start, not the client's retry schedule.
func waitServing(addr string, limit time.Duration) (time.Time, error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 1, MaxDelay: 2 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return time.Time{}, err
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return time.Now(), nil
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("%s not SERVING after %v (last: %v, %v)", addr, limit, resp.GetStatus(), err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
