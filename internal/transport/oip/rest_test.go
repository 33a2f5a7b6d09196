package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// startFakeREST serves the REST routes on a fake backend.
func startFakeREST(t *testing.T, opts Options) (*httptest.Server, *fakeBackend) {
	t.Helper()
	backend := newFakeBackend()
	mux := http.NewServeMux()
	opts.Logger = discardLogger
	New(backend, opts).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, backend
}

// do sends one request and decodes the JSON answer into a map.
func do(t *testing.T, method, url, body string, header http.Header) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if res.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, url, raw, err)
		}
	}
	return res.StatusCode, m, res.Header
}

const jsonRequest = `{
  "id": "r1",
  "inputs": [
    {"name": "x", "shape": [4, 3], "datatype": "FP32", "data": [[1, 0, 0], [0, 2, 0], [0, 0, 3], [0.5, 0.5, 0]]},
    {"name": "edge_index", "shape": [2, 3], "datatype": "INT64", "data": [0, 1, 0, 1, 2, 3]}
  ]
}`

func TestRESTHealthAndMetadata(t *testing.T) {
	srv, backend := startFakeREST(t, Options{ServerVersion: "test"})
	for _, c := range []struct {
		path string
		code int
		want map[string]any
	}{
		{"/v2", 200, map[string]any{"name": "gcnserve", "version": "test"}},
		{"/v2/", 200, map[string]any{"name": "gcnserve"}},
		{"/v2/health/live", 200, map[string]any{"live": true}},
		{"/v2/health/ready", 200, map[string]any{"ready": true}},
		{"/v2/models/gcn-karate/ready", 200, map[string]any{"name": "gcn-karate", "ready": true}},
		{"/v2/models/gcn-karate/versions/1/ready", 200, map[string]any{"ready": true}},
		{"/v2/models/gcn-karate", 200, map[string]any{"name": "gcn-karate", "platform": "onnxruntime_onnx"}},
		{"/v2/models/gcn-karate/versions/2", 200, map[string]any{"name": "gcn-karate"}},
		{"/v2/models/nope", 404, nil},
		{"/v2/models/nope/ready", 404, nil},
		{"/v2/models/gcn-karate/versions/7", 404, nil},
	} {
		code, got, _ := do(t, "GET", srv.URL+c.path, "", nil)
		if code != c.code {
			t.Errorf("GET %s: %d, want %d (%v)", c.path, code, c.code, got)
			continue
		}
		if c.code != 200 {
			if msg, _ := got["error"].(string); msg == "" {
				t.Errorf("GET %s: error body %v, want {\"error\": ...}", c.path, got)
			}
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("GET %s: %s = %v, want %v", c.path, k, got[k], v)
			}
		}
	}

	_, md, _ := do(t, "GET", srv.URL+"/v2/models/gcn-karate", "", nil)
	b, _ := json.Marshal(md["inputs"])
	if want := `[{"datatype":"FP32","name":"x","shape":[-1,3]},{"datatype":"INT64","name":"edge_index","shape":[2,-1]}]`; string(b) != want {
		t.Errorf("metadata inputs = %s, want %s", b, want)
	}
	if v, _ := json.Marshal(md["versions"]); string(v) != `["1","2"]` {
		t.Errorf("metadata versions = %s", v)
	}

	backend.mu.Lock()
	backend.ready = false
	backend.loading["gcn-cora"] = true
	backend.mu.Unlock()
	if code, got, _ := do(t, "GET", srv.URL+"/v2/health/ready", "", nil); code != 503 || got["ready"] != false {
		t.Errorf("ready while not ready: %d %v, want 503 ready=false", code, got)
	}
	if code, got, _ := do(t, "GET", srv.URL+"/v2/models/gcn-cora/ready", "", nil); code != 503 || got["ready"] != false {
		t.Errorf("model ready while loading: %d %v, want 503 ready=false", code, got)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/v2/models/gcn-karate/infer", "", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET infer: %d, want 405", code)
	}
}

func TestRESTInfer(t *testing.T) {
	srv, backend := startFakeREST(t, Options{})
	code, got, _ := do(t, "POST", srv.URL+"/v2/models/gcn-karate/infer", jsonRequest, nil)
	if code != 200 {
		t.Fatalf("infer: %d %v", code, got)
	}
	if got["model_name"] != "gcn-karate" || got["model_version"] != "2" || got["id"] != "r1" {
		t.Errorf("model_name/model_version/id = %v %v %v", got["model_name"], got["model_version"], got["id"])
	}
	tensors, _ := backend.lastPredict()
	if !slices.Equal(tensors.Features, testFeatures) || !slices.Equal(tensors.EdgeIndex, testEdges) {
		t.Errorf("model got %+v, want the request's tensors (nested x flattened row-major)", tensors)
	}
	outs, _ := got["outputs"].([]any)
	if len(outs) != 3 {
		t.Fatalf("outputs = %v, want 3", got["outputs"])
	}
	scores := outs[0].(map[string]any)
	if scores["name"] != "scores" || scores["datatype"] != "FP32" {
		t.Errorf("first output = %v, want scores FP32", scores)
	}
	data := scores["data"].([]any)
	for i, want := range wantScores() {
		if float32(data[i].(float64)) != want {
			t.Errorf("score %d = %v, want %v (shortest float32 text must read back exactly)", i, data[i], want)
		}
	}
	if shape, _ := json.Marshal(outs[1].(map[string]any)["shape"]); string(shape) != "[4,2]" {
		t.Errorf("probabilities shape = %s, want [4,2]", shape)
	}

	// A version in the path, INT32 edges, one requested output.
	body := strings.Replace(jsonRequest, `"INT64"`, `"INT32"`, 1)
	body = strings.Replace(body, `"id": "r1",`, `"outputs": [{"name": "predictions"}],`, 1)
	code, got, _ = do(t, "POST", srv.URL+"/v2/models/gcn-karate/versions/1/infer", body, nil)
	if code != 200 || got["model_version"] != "1" {
		t.Fatalf("versioned infer: %d %v", code, got)
	}
	if _, ok := got["id"]; ok {
		t.Errorf("response has an id the request did not give")
	}
	outs = got["outputs"].([]any)
	if len(outs) != 1 || outs[0].(map[string]any)["name"] != "predictions" || outs[0].(map[string]any)["datatype"] != "INT64" {
		t.Errorf("outputs = %v, want predictions INT64 only", outs)
	}
}

// TestRESTBinaryExtension speaks Triton's binary tensor data extension, as
// tritonclient.http does by default.
func TestRESTBinaryExtension(t *testing.T) {
	srv, backend := startFakeREST(t, Options{})
	x := make([]byte, 4*len(testFeatures))
	for i, v := range testFeatures {
		binary.LittleEndian.PutUint32(x[4*i:], math.Float32bits(v))
	}
	head := `{"inputs":[{"name":"x","shape":[4,3],"datatype":"FP32","parameters":{"binary_data_size":48}},` +
		`{"name":"edge_index","shape":[2,3],"datatype":"INT64","data":[0,1,0,1,2,3]}],` +
		`"outputs":[{"name":"scores","parameters":{"binary_data":true}},{"name":"predictions"}]}`
	req, _ := http.NewRequest("POST", srv.URL+"/v2/models/gcn-karate/infer", bytes.NewReader(append([]byte(head), x...)))
	req.Header.Set(headerContentLength, strconv.Itoa(len(head)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	n, err := strconv.Atoi(res.Header.Get(headerContentLength))
	if err != nil || n > len(body) {
		t.Fatalf("%s = %q, body %d bytes", headerContentLength, res.Header.Get(headerContentLength), len(body))
	}
	var got restResponse
	if err := json.Unmarshal(body[:n], &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Outputs) != 2 || got.Outputs[0].Parameters["binary_data_size"] != float64(16) || got.Outputs[0].Data != nil {
		t.Fatalf("outputs = %+v, want scores as 16 binary bytes", got.Outputs)
	}
	if string(got.Outputs[1].Data) == "" {
		t.Errorf("predictions not asked as binary must carry JSON data")
	}
	bin := body[n:]
	if len(bin) != 16 {
		t.Fatalf("binary part %d bytes, want 16", len(bin))
	}
	for i, want := range wantScores() {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(bin[4*i:])); v != want {
			t.Errorf("binary score %d = %v, want %v", i, v, want)
		}
	}
	if tensors, _ := backend.lastPredict(); !slices.Equal(tensors.Features, testFeatures) {
		t.Errorf("binary x decoded as %v", tensors.Features)
	}
}

func TestRESTInvalid(t *testing.T) {
	srv, backend := startFakeREST(t, Options{MaxRequestBytes: 4096})
	x := func(data string) string {
		return `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":` + data + `},` +
			`{"name":"edge_index","shape":[2,1],"datatype":"INT64","data":[0,1]}]}`
	}
	e := func(dt, shape, data string) string {
		return `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]},` +
			`{"name":"edge_index","shape":` + shape + `,"datatype":"` + dt + `","data":` + data + `}]}`
	}
	cases := []struct {
		name, path, body string
		code             int
		substr           string
	}{
		{"not JSON", "gcn-karate", `{"inputs": [`, 400, "malformed inference request"},
		{"NaN literal", "gcn-karate", x(`[1,2,NaN,4,5,6]`), 400, "malformed inference request"},
		{"trailing data", "gcn-karate", x(`[1,2,3,4,5,6]`) + `{}`, 400, "after top-level value"},
		{"strings", "gcn-karate", x(`["1","2","3","4","5","6"]`), 400, `input "x": data: element 0: data must be numbers`},
		{"short", "gcn-karate", x(`[1,2,3,4,5]`), 400, `input "x": shape [2, 3] needs 6 elements, data has 5`},
		{"long", "gcn-karate", x(`[1,2,3,4,5,6,7]`), 400, `input "x": data: more than the 6 elements`},
		{"out of FP32 range", "gcn-karate", x(`[1,2,3,4,5,1e39]`), 400, `input "x": data: element 5: 1e39 is out of FP32 range`},
		{"no data", "gcn-karate", `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32"}]}`, 400, `input "x": data is missing`},
		{"no shape", "gcn-karate", `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`, 400, `input "x": shape is missing`},
		{"fraction index", "gcn-karate", e("INT64", "[2,1]", "[0,0.5]"), 400, `input "edge_index": data: element 1: "0.5" is not an integer`},
		{"INT32 overflow", "gcn-karate", e("INT32", "[2,1]", "[0,4294967296]"), 400, `input "edge_index": data: element 1: 4294967296 does not fit INT32`},
		{"edge weights", "gcn-karate", strings.TrimSuffix(e("INT64", "[2,1]", "[0,1]"), `]}`) + `,{"name":"edge_weight","shape":[1],"datatype":"FP32","data":[1]}]}`,
			400, `input "edge_weight": this model takes no edge weights`},
		{"unknown model", "nope", x(`[1,2,3,4,5,6]`), 404, `model "nope" is not served`},
		{"too large", "gcn-karate", x(`[` + strings.Repeat("1,", 3000) + `1]`), 413, "larger than 4096 bytes (--max-request-bytes)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got, _ := do(t, "POST", srv.URL+"/v2/models/"+c.path+"/infer", c.body, nil)
			msg, _ := got["error"].(string)
			if code != c.code || !strings.Contains(msg, c.substr) {
				t.Errorf("%d %q, want %d containing %q", code, msg, c.code, c.substr)
			}
		})
	}
	if _, n := backend.lastPredict(); n != 0 {
		t.Errorf("bad requests reached the model %d times", n)
	}

	// A body without a declared length is cut at the limit while read.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[` + strings.Repeat("1,", 3000) + `1]}]}`))
		_ = pw.Close()
	}()
	res, err := http.Post(srv.URL+"/v2/models/gcn-karate/infer", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversize body: %d, want 413", res.StatusCode)
	}
}

// TestNonFiniteOutputsStayJSON: JSON has no NaN or infinity; a model that
// outputs one must still get a body every JSON parser reads.
func TestNonFiniteOutputsStayJSON(t *testing.T) {
	b := appendFloat32s(nil, []float32{0.5, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))})
	if want := `[0.5,"NaN","Infinity","-Infinity"]`; string(b) != want {
		t.Fatalf("appendFloat32s = %s, want %s", b, want)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not JSON", b)
	}
}
