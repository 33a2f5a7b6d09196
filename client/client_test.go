package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// fakeServer is a GCNService that runs no model (this file tests the
// transport: limits, retries, balancing, TLS, tokens). It scores every node
// 0.5, records the authorization header it saw and fails the first
// failFirst calls with UNAVAILABLE.
type fakeServer struct {
	gcnpb.UnimplementedGCNServiceServer
	failFirst int64
	calls     atomic.Int64
	mu        sync.Mutex
	auth      []string // guarded by mu
	models    []string // guarded by mu: "name/version" of each request
}

func (f *fakeServer) ProcessGraph(ctx context.Context, g *gcnpb.GraphData) (*gcnpb.GCNResult, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.models = append(f.models, g.ModelName+"/"+g.ModelVersion)
	f.mu.Unlock()
	if f.calls.Add(1) <= f.failFirst {
		return nil, status.Error(codes.Unavailable, "fake: draining")
	}
	res := &gcnpb.GCNResult{NodeScores: make(map[string]float32, len(g.Nodes))}
	for _, n := range g.Nodes {
		res.NodeScores[n.Id] = 0.5
	}
	return res, nil
}

func (f *fakeServer) GetModelInfo(_ context.Context, req *gcnpb.ModelInfoRequest) (*gcnpb.ModelInfo, error) {
	return &gcnpb.ModelInfo{Name: "fake:" + req.ModelName, Version: req.ModelVersion, FeatureDim: 2}, nil
}

func (f *fakeServer) authHeaders() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...)
}

// serve starts f on a loopback port and returns its address.
func serve(t *testing.T, f *fakeServer, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 30)}, opts...)...)
	gcnpb.RegisterGCNServiceServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, target string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(target, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// chainGraph is a graph of n nodes with 2 features and a chain of edges.
func chainGraph(n int) Graph {
	g := Graph{Nodes: make([]Node, n)}
	for i := range g.Nodes {
		g.Nodes[i] = Node{ID: "n" + strconv.Itoa(i), Features: []float32{1, 0}}
		if i > 0 {
			g.Edges = append(g.Edges, Edge{Source: g.Nodes[i-1].ID, Target: g.Nodes[i].ID})
		}
	}
	return g
}

func TestProcessGraph(t *testing.T) {
	c := dial(t, serve(t, &fakeServer{}))
	g := GraphData(chainGraph(3))
	res, err := c.ProcessGraph(ctx(t), g)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.NodeScores); got != 3 {
		t.Errorf("got %d scores, want 3", got)
	}
	info, err := c.GetModelInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "fake:" {
		t.Errorf("GetModelInfo name %q, want fake:", info.Name)
	}
}

// TestWithModel: the client's model choice goes into requests that name
// none, never into the caller's message, and never over the request's own.
func TestWithModel(t *testing.T) {
	f := &fakeServer{}
	c := dial(t, serve(t, f), WithModel("cora", "2"))
	g := GraphData(chainGraph(2))
	if _, err := c.ProcessGraph(ctx(t), g); err != nil {
		t.Fatal(err)
	}
	if g.ModelName != "" || g.ModelVersion != "" {
		t.Errorf("caller's message changed to %q/%q", g.ModelName, g.ModelVersion)
	}
	g.ModelName = "karate"
	if _, err := c.ProcessGraph(ctx(t), g); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.models
	f.mu.Unlock()
	if len(got) != 2 || got[0] != "cora/2" || got[1] != "karate/" {
		t.Errorf("server saw models %q, want [cora/2 karate/]", got)
	}
	info, err := c.GetModelInfo(ctx(t))
	if err != nil || info.Name != "fake:cora" || info.Version != "2" {
		t.Errorf("GetModelInfo: %v, %v; want it to ask for cora version 2", info, err)
	}
}

// TestReceiveLimit: the default accepts a response far above grpc-go's own
// 4 MiB default, and WithMaxReceiveBytes lowers it.
func TestReceiveLimit(t *testing.T) {
	addr := serve(t, &fakeServer{})
	// Long ids keep the node count, and the test's time, down: a score
	// entry is 64+7 bytes, the response 70k * 71 bytes = 5 MB.
	g := GraphData(chainGraph(70_000))
	for _, n := range g.Nodes {
		n.Id = fmt.Sprintf("%064s", n.Id)
	}
	res, err := dial(t, addr).ProcessGraph(ctx(t), g)
	if err != nil {
		t.Fatalf("default limits: %v", err)
	}
	if len(res.NodeScores) != len(g.Nodes) {
		t.Fatalf("got %d scores, want %d", len(res.NodeScores), len(g.Nodes))
	}
	_, err = dial(t, addr, WithMaxReceiveBytes(1<<20)).ProcessGraph(ctx(t), g)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("1 MiB receive limit: got %v, want RESOURCE_EXHAUSTED", err)
	}
	_, err = dial(t, addr, WithMaxSendBytes(1000)).ProcessGraph(ctx(t), GraphData(chainGraph(100)))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("1000-byte send limit: got %v, want RESOURCE_EXHAUSTED", err)
	}
}

// TestRetryUnavailable: the default service config retries UNAVAILABLE.
func TestRetryUnavailable(t *testing.T) {
	f := &fakeServer{failFirst: 2}
	if _, err := dial(t, serve(t, f)).ProcessGraph(ctx(t), GraphData(chainGraph(2))); err != nil {
		t.Fatalf("got %v, want success on the third attempt", err)
	}
	if got := f.calls.Load(); got != 3 {
		t.Errorf("server saw %d attempts, want 3", got)
	}
	f = &fakeServer{failFirst: 100}
	_, err := dial(t, serve(t, f)).ProcessGraph(ctx(t), GraphData(chainGraph(2)))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("always unavailable: got %v, want UNAVAILABLE", err)
	}
	if got := f.calls.Load(); got != 5 {
		t.Errorf("server saw %d attempts, want maxAttempts 5", got)
	}
}

// TestRoundRobin: calls are spread over every address the target resolves to.
func TestRoundRobin(t *testing.T) {
	a, b := &fakeServer{}, &fakeServer{}
	r := manual.NewBuilderWithScheme("fake")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: serve(t, a)}, {Addr: serve(t, b)}}})
	c := dial(t, "fake:///gcnserve", WithDialOptions(grpc.WithResolvers(r)))
	// round_robin picks among the connections that are ready, so the first
	// calls may all go to the server that connected first.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := c.ProcessGraph(ctx(t), GraphData(chainGraph(1))); err != nil {
			t.Fatal(err)
		}
		if a.calls.Load() > 0 && b.calls.Load() > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a.calls.Load() == 0 || b.calls.Load() == 0 {
		t.Errorf("calls per server %d and %d, want both > 0", a.calls.Load(), b.calls.Load())
	}
}

// TestHealthChecking: a server whose health says NOT_SERVING (draining)
// gets no calls.
func TestHealthChecking(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	f := &fakeServer{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	gcnpb.RegisterGCNServiceServer(s, f)
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(lis)
	t.Cleanup(s.Stop)

	c := dial(t, lis.Addr().String())
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = c.ProcessGraph(short, GraphData(chainGraph(1)), grpc.WaitForReady(true))
	if status.Code(err) != codes.DeadlineExceeded || f.calls.Load() != 0 {
		t.Errorf("NOT_SERVING: got %v after %d calls reached the server, want DEADLINE_EXCEEDED and none", err, f.calls.Load())
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if _, err := c.ProcessGraph(ctx(t), GraphData(chainGraph(1)), grpc.WaitForReady(true)); err != nil {
		t.Errorf("SERVING again: %v", err)
	}
}

func TestToken(t *testing.T) {
	f := &fakeServer{}
	addr := serve(t, f)
	if _, err := dial(t, addr, WithToken("s3cret")).ProcessGraph(ctx(t), GraphData(chainGraph(1))); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, WithTokenFile(file))
	if _, err := c.ProcessGraph(ctx(t), GraphData(chainGraph(1))); err != nil {
		t.Fatal(err)
	}
	// A rotated token is used by the next call on the same connection.
	if err := os.WriteFile(file, []byte("second-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProcessGraph(ctx(t), GraphData(chainGraph(1))); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer s3cret", "Bearer first", "Bearer second-token"}
	if got := f.authHeaders(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("authorization headers %q, want %q", got, want)
	}

	if _, err := Dial(addr, WithTokenFile(filepath.Join(t.TempDir(), "missing"))); err == nil {
		t.Error("Dial with a missing token file: got nil error")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if _, err := Dial(addr, WithTokenFile(empty)); err == nil {
		t.Error("Dial with an empty token file: got nil error")
	}
}

// TestTLS: server verification with a CA file, and a client certificate for
// a server that requires one.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	serverCert := issue(t, ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	clientCert := issue(t, ca, caKey, "client", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	addr := serve(t, &fakeServer{}, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})))
	certFile := writePEM(t, dir, "client.pem", "CERTIFICATE", clientCert.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePEM(t, dir, "client-key.pem", "PRIVATE KEY", keyDER)

	c := dial(t, addr, WithTLS(caFile), WithClientCertificate(certFile, keyFile))
	if _, err := c.ProcessGraph(ctx(t), GraphData(chainGraph(1))); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	_, err = dial(t, addr, WithTLS(caFile)).ProcessGraph(ctx(t), GraphData(chainGraph(1)))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("no client certificate: got %v, want UNAVAILABLE", err)
	}
	if _, err := Dial(addr, WithTLS(filepath.Join(dir, "missing.pem"))); err == nil {
		t.Error("Dial with a missing CA file: got nil error")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
