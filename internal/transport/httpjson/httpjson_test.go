package httpjson_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/grpcapi"
	"github.com/gcnserve/gcnserve/internal/transport/httpjson"
)

const maxRequestBytes = 1 << 20

// backend is the real Karate model behind serving, with the HTTP routes on
// an httptest server and the gRPC tutorial service (what gcnclient calls)
// on an in-memory listener, both over the same serving.Service.
type backend struct {
	url  string
	grpc gcnpb.GCNServiceClient
}

func start(t *testing.T) *backend {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	repo := infertest.KarateRepository(t, nil)
	svc := serving.New(serving.Config{Repository: repo, MaxRequestBytes: maxRequestBytes,
		MaxNodes: 1000, MaxEdges: 10000, Logger: log})

	mux := http.NewServeMux()
	httpjson.Register(mux, svc)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	codec, err := grpcapi.Codec()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(codec), grpc.MaxRecvMsgSize(maxRequestBytes))
	grpcapi.Register(gs, svc)
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &backend{url: hs.URL, grpc: gcnpb.NewGCNServiceClient(conn)}
}

// post sends body as curl -d would and returns the status and the body.
func post(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: Content-Type %q, want application/json", url, ct)
	}
	return res.StatusCode, b
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func karateJSON(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProcessGraphEqualsGRPC: examples/karate.json POSTed as JSON gets the
// scores and predictions the gRPC tutorial service gives for the same
// request (what gcnclient prints), and the JSON shows zero values.
func TestProcessGraphEqualsGRPC(t *testing.T) {
	b := start(t)
	body := karateJSON(t)
	for _, include := range []bool{false, true} {
		req := new(gcnpb.GraphData)
		if err := protojson.Unmarshal(body, req); err != nil {
			t.Fatal(err)
		}
		req.IncludePredictions = include
		jsonBody, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if !include {
			jsonBody = body // the file as it is, byte for byte
		}
		status, out := post(t, b.url+"/v1/process-graph", jsonBody)
		if status != http.StatusOK {
			t.Fatalf("include_predictions=%v: status %d: %s", include, status, out)
		}
		got := new(gcnpb.GCNResult)
		if err := protojson.Unmarshal(out, got); err != nil {
			t.Fatalf("response is not a JSON GCNResult: %v\n%s", err, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		want, err := b.grpc.ProcessGraph(ctx, req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetNodeScores()) != 34 || len(got.GetNodeScores()) != len(want.GetNodeScores()) {
			t.Fatalf("got %d scores, gRPC %d, want 34", len(got.GetNodeScores()), len(want.GetNodeScores()))
		}
		for id, w := range want.GetNodeScores() {
			if g, ok := got.GetNodeScores()[id]; !ok || math.Abs(float64(g-w)) > 1e-6 {
				t.Errorf("node %s: HTTP score %v, gRPC %v", id, g, w)
			}
		}
		if got.GetModelName() != want.GetModelName() || got.GetModelVersion() != want.GetModelVersion() || got.GetModelName() == "" {
			t.Errorf("model %q version %q, gRPC says %q %q", got.GetModelName(), got.GetModelVersion(), want.GetModelName(), want.GetModelVersion())
		}
		if !include {
			if len(got.GetPredictions()) != 0 {
				t.Errorf("predictions without include_predictions: %d", len(got.GetPredictions()))
			}
			continue
		}
		if len(got.GetPredictions()) != len(want.GetPredictions()) {
			t.Fatalf("got %d predictions, gRPC %d", len(got.GetPredictions()), len(want.GetPredictions()))
		}
		zeroClass := 0
		for i, w := range want.GetPredictions() {
			g := got.GetPredictions()[i]
			if g.GetId() != w.GetId() || g.GetClassIndex() != w.GetClassIndex() || g.GetClassName() != w.GetClassName() {
				t.Errorf("prediction %d: HTTP %v, gRPC %v", i, g, w)
			}
			for k, p := range w.GetProbabilities() {
				if math.Abs(float64(g.GetProbabilities()[k]-p)) > 1e-6 {
					t.Errorf("prediction %d class %d: HTTP %v, gRPC %v", i, k, g.GetProbabilities()[k], p)
				}
			}
			if w.GetClassIndex() == 0 {
				zeroClass++
			}
		}
		// Class 0 must be written out, not left for the reader to infer.
		var raw struct {
			Predictions []map[string]json.RawMessage `json:"predictions"`
		}
		if err := json.Unmarshal(out, &raw); err != nil {
			t.Fatal(err)
		}
		written := 0
		for _, p := range raw.Predictions {
			if string(p["classIndex"]) == "0" {
				written++
			}
		}
		if zeroClass == 0 || written != zeroClass {
			t.Errorf(`%d nodes are of class 0, %d show "classIndex": 0 in the JSON; want them equal and more than 0`, zeroClass, written)
		}
	}
}

// TestErrors: each refusal gets its HTTP status and a JSON error naming
// the problem, the same message gRPC gives.
func TestErrors(t *testing.T) {
	b := start(t)
	karate := karateJSON(t)
	for _, tc := range []struct {
		name       string
		body       string
		wantStatus int
		wantMsg    string
	}{
		{"not JSON", `nodes: []`, 400, "not a JSON GraphData"},
		{"unknown field", `{"nodez": []}`, 400, "nodez"},
		{"unknown edge target", strings.Replace(string(karate), `"edges": [`, `"edges": [{"sourceId":"0","targetId":"nope"},`, 1), 400, `"nope" is not a node id`},
		{"short features", `{"nodes":[{"id":"a","features":[1]}]}`, 400, "node 0"},
		{"unknown model", `{"nodes":[],"modelName":"nope"}`, 404, "nope"},
		{"bad version", `{"nodes":[],"modelVersion":"x"}`, 400, "version"},
		{"oversize", `{"nodes":[` + strings.Repeat(`{"id":"a","features":[0]},`, maxRequestBytes/20) + `]}`, 413, "--max-request-bytes"},
	} {
		status, out := post(t, b.url+"/v1/process-graph", []byte(tc.body))
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(out, &e); err != nil {
			t.Errorf("%s: body %q is not {\"error\": ...}: %v", tc.name, out, err)
			continue
		}
		if status != tc.wantStatus || !strings.Contains(e.Error, tc.wantMsg) {
			t.Errorf("%s: got %d %q, want %d and a message containing %q", tc.name, status, e.Error, tc.wantStatus, tc.wantMsg)
		}
	}
	// Wrong method: the mux answers 405 itself.
	if status, _ := get(t, b.url+"/v1/process-graph"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/process-graph: status %d, want 405", status)
	}
}

func TestModelInfo(t *testing.T) {
	b := start(t)
	status, out := get(t, b.url+"/v1/model-info")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/model-info: %d %s", status, out)
	}
	mi := new(gcnpb.ModelInfo)
	if err := protojson.Unmarshal(out, mi); err != nil {
		t.Fatalf("not a JSON ModelInfo: %v\n%s", err, out)
	}
	if mi.GetFeatureDim() != 34 || mi.GetName() == "" || mi.GetMaxRequestBytes() != maxRequestBytes {
		t.Errorf("model info %v: want 34 features, a name and max_request_bytes %d", mi, maxRequestBytes)
	}
	// score_class 0 is meaningful: it must be written out.
	if !bytes.Contains(out, []byte(`"scoreClass"`)) {
		t.Errorf("model info JSON leaves out zero-valued fields:\n%s", out)
	}
	if status, out := get(t, b.url+"/v1/model-info?model="+mi.GetName()+"&version="+mi.GetVersion()); status != http.StatusOK {
		t.Errorf("GET /v1/model-info?model=%s&version=%s: %d %s", mi.GetName(), mi.GetVersion(), status, out)
	}
	if status, out := get(t, b.url+"/v1/model-info?model=nope"); status != http.StatusNotFound {
		t.Errorf("GET /v1/model-info?model=nope: %d %s, want 404", status, out)
	}
}
