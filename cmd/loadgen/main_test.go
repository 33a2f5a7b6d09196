package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
)

// halfScoreServer is a generated-code GCNService that scores every node 0.5
// and records the content-types it was called with.
type halfScoreServer struct {
	gcnpb.UnimplementedGCNServiceServer
	mu           sync.Mutex
	contentTypes map[string]int
	nodes        int
}

func (s *halfScoreServer) ProcessGraph(ctx context.Context, g *gcnpb.GraphData) (*gcnpb.GCNResult, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	for _, ct := range md.Get("content-type") {
		s.contentTypes[ct]++
	}
	s.nodes = len(g.GetNodes())
	s.mu.Unlock()
	scores := make(map[string]float32, len(g.GetNodes()))
	for _, n := range g.GetNodes() {
		scores[n.GetId()] = 0.5
	}
	return &gcnpb.GCNResult{NodeScores: scores}, nil
}

func startServer(t *testing.T) (addr string, srv *halfScoreServer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv = &halfScoreServer{contentTypes: map[string]int{}}
	gcnpb.RegisterGCNServiceServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String(), srv
}

// TestRunLoadSendsOrdinaryProtobuf checks that the pass-through codec's
// calls decode on a generated-code server as the payload's message, with
// the content-type a generated client sends, and that the counts add up.
func TestRunLoadSendsOrdinaryProtobuf(t *testing.T) {
	addr, srv := startServer(t)
	dir := t.TempDir()
	c := config{
		addr: addr, concurrency: 3, duration: 200 * time.Millisecond, warmup: 50 * time.Millisecond,
		timeout: 10 * time.Second, nodes: 50, edges: 120, features: 8, seed: 3,
		pid: os.Getpid(), saveResponse: filepath.Join(dir, "resp.pb"), tolerance: 1e-6,
	}
	graph, payload, err := buildPayload(c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runLoad(c, graph, payload)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || len(res.Errors) != 0 {
		t.Errorf("got %d OK and errors %v, want some OK and no errors", res.OK, res.Errors)
	}
	if srv.nodes != 50 {
		t.Errorf("server decoded %d nodes, want 50", srv.nodes)
	}
	for ct := range srv.contentTypes {
		if ct != "application/grpc+proto" {
			t.Errorf("server saw content-type %q, want application/grpc+proto only", ct)
		}
	}
	if res.ServerCPUPerOK < 0 || res.ServerPeakRSSMB <= 0 {
		t.Errorf("got server CPU %v ms/request and peak RSS %v MB, want both sampled", res.ServerCPUPerOK, res.ServerPeakRSSMB)
	}
	if !(res.P50 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("got p50 %v, p99 %v, max %v, want them ordered", res.P50, res.P99, res.Max)
	}

	// The saved response is a GCNResult; comparing a run with it passes.
	c.expect, c.saveResponse = c.saveResponse, ""
	if _, err := runLoad(c, graph, payload); err != nil {
		t.Errorf("--expect with the same server's response: %v", err)
	}
}

// TestExpectRejectsDifferentScores checks that --expect fails on scores
// that differ by more than the tolerance.
func TestExpectRejectsDifferentScores(t *testing.T) {
	addr, _ := startServer(t)
	g := graphwire.SyntheticGraph(4, 3, 2, 1)
	want := &gcnpb.GCNResult{NodeScores: map[string]float32{}}
	for _, n := range g.GetNodes() {
		want.NodeScores[n.GetId()] = 0.5
	}
	want.NodeScores["n2"] = 0.6
	data, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "want.pb")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := config{addr: addr, concurrency: 1, requests: 1, timeout: 10 * time.Second, expect: path, tolerance: 1e-3}
	payload, err := proto.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runLoad(c, g, payload); err == nil {
		t.Error("got no error for a score off by 0.1, want --expect to fail")
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		sorted []time.Duration
		p      float64
		want   float64
	}{
		{nil, 50, 0},
		{ms(7), 99, 7},
		{ms(1, 2, 3, 4), 50, 2},
		{ms(1, 2, 3, 4), 99, 4},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
		}
	}
}

func TestProcSamplers(t *testing.T) {
	pid := os.Getpid()
	// Burn a little CPU so the 10 ms clock has something to count.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	cpu, err := processCPU(pid)
	if err != nil || cpu <= 0 {
		t.Errorf("processCPU(self) = %v, %v; want > 0", cpu, err)
	}
	rss, err := peakRSS(pid)
	if err != nil || rss <= 0 {
		t.Errorf("peakRSS(self) = %v, %v; want > 0", rss, err)
	}
	if busy, err := machineBusy(); err != nil || busy <= 0 {
		t.Errorf("machineBusy() = %v, %v; want > 0", busy, err)
	}
}
