// Package hostilegraphs attacks the stored-graph service (GraphService over
// gRPC, /v1/graphs over HTTP, the bbolt store under --graph-store) of the
// real gcnserve binary the way issue 16 attacked the stateless server: no
// token, stalled and lying streams, bombs, hostile ids, a budget run dry,
// readers that never read, deletes racing writes, and a hostile store
// directory at start. Each attack must get a clear error naming what is
// wrong while the server keeps serving everyone else; memory is peak RSS
// (VmHWM from /proc).
//
// HOSTILEGRAPHS_BINARY runs the tests against another build (e.g. the
// branch before the fixes); settings go in as environment twins, which an
// older build ignores.
package hostilegraphs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// token is the bearer token every server here requires.
const token = "graph-attack-token-0123"

// featureDim is the bundled karate model's F.
const featureDim = 34

// server is one gcnserve under attack: gRPC and HTTP, a token file and a
// fresh --graph-store.
type server struct {
	*servertest.Server
	store string
	conn  *grpc.ClientConn
	gc    gcnpb.GraphServiceClient
	http  string // http://host:port
}

// start runs gcnserve with a token, a temporary graph store and env
// (environment twins of the settings under test).
func start(t *testing.T, env ...string) *server {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	p := servertest.Run(t, servertest.Options{
		Binary: os.Getenv("HOSTILEGRAPHS_BINARY"),
		Env:    append([]string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)}, env...),
		HTTP:   true,
		Args:   []string{"--auth-token-file", tokens, "--graph-store", store, "--drain-delay", "0"},
	})
	conn := servertest.Dial(t, p.Addr)
	return &server{Server: p, store: store, conn: conn, gc: gcnpb.NewGraphServiceClient(conn), http: "http://" + p.HTTPAddr}
}

// authed is ctx carrying the token.
func authed(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// callCtx is a context with the token and a timeout, cancelled at the
// test's end.
func callCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return authed(ctx)
}

func node(id string, hot int) *gcnpb.Node {
	f := make([]float32, featureDim)
	f[hot%featureDim] = 1
	return &gcnpb.Node{Id: id, Features: f}
}

func edge(s, d string) *gcnpb.Edge { return &gcnpb.Edge{SourceId: s, TargetId: d} }

// ring is a graph of n nodes p0..p(n-1), each linked to the next.
func ring(prefix string, n int) *gcnpb.GraphData {
	g := &gcnpb.GraphData{}
	for i := range n {
		g.Nodes = append(g.Nodes, node(prefix+strconv.Itoa(i), i))
		g.Edges = append(g.Edges, edge(prefix+strconv.Itoa(i), prefix+strconv.Itoa((i+1)%n)))
	}
	return g
}

// create makes graph id with a ring of n nodes.
func (s *server) create(t *testing.T, id string, n int) *gcnpb.GraphInfo {
	t.Helper()
	info, err := s.gc.CreateGraph(callCtx(t, 30*time.Second), &gcnpb.CreateGraphRequest{GraphId: id, Graph: ring("n", n)})
	if err != nil {
		t.Fatalf("CreateGraph %q: %v", id, err)
	}
	return info
}

// wantStatus fails unless err has code and its message holds every sub.
func wantStatus(t *testing.T, what string, err error, code codes.Code, subs ...string) {
	t.Helper()
	st := status.Convert(err)
	ok := st.Code() == code
	for _, sub := range subs {
		ok = ok && strings.Contains(st.Message(), sub)
	}
	if !ok {
		t.Errorf("%s: %v %.300q, want %v naming %q", what, st.Code(), st.Message(), code, subs)
	}
}

// serving checks the server still answers: health, and a score of a
// graph made for the purpose.
func (s *server) serving(t *testing.T, after string) {
	t.Helper()
	ctx := callCtx(t, 20*time.Second)
	res, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after %s: %v %v, want SERVING", after, res.GetStatus(), err)
		return
	}
	id := fmt.Sprintf("alive-%d", time.Now().UnixNano())
	if _, err := s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: id, Graph: ring("n", 5)}); err != nil {
		t.Errorf("CreateGraph after %s: %v", after, err)
		return
	}
	if _, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: id, NodeIds: []string{"n0"}}); err != nil {
		t.Errorf("ScoreNodes after %s: %v", after, err)
	}
	if _, err := s.gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: id}); err != nil {
		t.Errorf("DeleteGraph after %s: %v", after, err)
	}
}

// do sends an HTTP request with the token (when authed) and returns the
// status and body.
func (s *server) do(t *testing.T, method, path string, body []byte, authed bool, header ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.http+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authed {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

// errorMessage is the message of a JSON error body ({"error": "..."}), or
// the body itself when it is not one.
func errorMessage(body string) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) == nil && e.Error != "" {
		return e.Error
	}
	return body
}

// jsonBody marshals v.
func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
