package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/client"
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// gcnclient runs run in-process from the repo root (so paths in args are
// the README's) and returns its exit status, stdout and stderr.
func gcnclient(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(testenv.RepoRoot(t))
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		code, stdout, stderr := gcnclient(t, arg)
		if code != 0 || !strings.HasPrefix(stdout, "Usage:") || !strings.Contains(stdout, "--nodes F --edges F") || stderr != "" {
			t.Errorf("%s: exit %d, stdout %.40q..., stderr %q; want 0, usage on stdout, nothing on stderr", arg, code, stdout, stderr)
		}
	}
}

// TestUsageErrors: every mistake on the command line exits 2 with one
// message, printed once.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--top", "many", "examples/karate.json"}, `invalid value "many" for flag -top`},
		{nil, "no graph: give request.json, a CSV directory, or --nodes and --edges"},
		{[]string{"a.json", "b.json"}, "one graph at a time; got 2 arguments"},
		{[]string{"--output", "xml", "examples/karate.json"}, `--output "xml": want table, csv or json`},
		{[]string{"--top", "-1", "examples/karate.json"}, "--top -1: want 0 (every node) or more"},
		{[]string{"--nodes", "n.csv", "x"}, "--nodes and --edges go together"},
		{[]string{"--nodes", "n.csv", "--edges", "e.csv", "x.json"}, "not both"},
		{[]string{"--info", "examples/karate.json"}, "--info takes no graph"},
		{[]string{"--tls-cert", "c.pem", "--info"}, "--tls-cert and --tls-key go together"},
		{[]string{"cmd/client/testdata/karate/nodes.csv"}, "a CSV graph is two files"},
	} {
		code, stdout, stderr := gcnclient(t, tc.args...)
		if code != 2 || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing on stdout", tc.args, code, stdout)
		}
		if strings.Count(stderr, tc.want) != 1 || strings.Count(stderr, "gcnclient: ") != 1 {
			t.Errorf("%q: stderr %q, want one 'gcnclient: ' line with %q", tc.args, stderr, tc.want)
		}
	}
}

// TestBinaryExitCodes: the built binary exits as run returns.
func TestBinaryExitCodes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "gcnclient")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		arg  string
		want int
	}{{"--help", 0}, {"--bogus", 2}, {"/nonexistent.json", 1}} {
		err := exec.Command(bin, tc.arg).Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.want {
			t.Errorf("gcnclient %s: exit %d, want %d", tc.arg, code, tc.want)
		}
	}
}

// scoresJSON runs gcnclient --output json and returns the result.
func scoresJSON(t *testing.T, args ...string) *gcnpb.GCNResult {
	t.Helper()
	code, stdout, stderr := gcnclient(t, append([]string{"--output", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("gcnclient %q: exit %d: %s", args, code, stderr)
	}
	res := &gcnpb.GCNResult{}
	if err := protojson.Unmarshal([]byte(stdout), res); err != nil {
		t.Fatalf("gcnclient %q: output is not a GCNResult: %v\n%s", args, err, stdout)
	}
	return res
}

func sameScores(t *testing.T, what string, got, want *gcnpb.GCNResult) {
	t.Helper()
	if len(got.NodeScores) != len(want.NodeScores) {
		t.Fatalf("%s: %d scores, want %d", what, len(got.NodeScores), len(want.NodeScores))
	}
	for id, w := range want.NodeScores {
		if g, ok := got.NodeScores[id]; !ok || g != w {
			t.Errorf("%s: node %q score %v (present %v), want %v", what, id, g, ok, w)
		}
	}
}

// TestKarate runs gcnclient against the real server on the bundled model:
// CSV input scores as JSON input does, the scores are PyTorch's, and the
// output flags do what they say.
func TestKarate(t *testing.T) {
	srv := servertest.Start(t, "--model", "model/karate.onnx")
	addr := "--addr=" + srv.Addr

	fromJSON := scoresJSON(t, addr, "examples/karate.json")
	sameScores(t, "CSV directory", scoresJSON(t, addr, "cmd/client/testdata/karate"), fromJSON)
	sameScores(t, "--nodes --edges", scoresJSON(t, addr,
		"--nodes", "cmd/client/testdata/karate/nodes.csv", "--edges", "cmd/client/testdata/karate/edges.csv"), fromJSON)

	karateJSON, err := os.ReadFile("examples/karate.json")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{addr, "--output", "json", "-"}, bytes.NewReader(karateJSON), &out, &errOut); code != 0 {
		t.Fatalf("stdin: exit %d: %s", code, errOut.String())
	}
	fromStdin := &gcnpb.GCNResult{}
	if err := protojson.Unmarshal(out.Bytes(), fromStdin); err != nil {
		t.Fatal(err)
	}
	sameScores(t, "stdin", fromStdin, fromJSON)

	// PyTorch's scores for the same request.
	data, err := os.ReadFile("model/testdata/karate/karate.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Scores []float32 `json:"scores"`
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	g, err := client.ReadJSONFile("examples/karate.json")
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range g.Nodes {
		if got := fromJSON.NodeScores[n.Id]; math.Abs(float64(got-fx.Scores[i])) > 1e-5 {
			t.Errorf("node %s: score %v, PyTorch %v", n.Id, got, fx.Scores[i])
		}
	}
	if fromJSON.ModelName == "" || fromJSON.ModelVersion == "" || len(fromJSON.Predictions) != 0 {
		t.Errorf("json output: model %q version %q, %d predictions; want the model named and no predictions without --predictions",
			fromJSON.ModelName, fromJSON.ModelVersion, len(fromJSON.Predictions))
	}
	named := scoresJSON(t, addr, "--model", fromJSON.ModelName, "--model-version", fromJSON.ModelVersion, "examples/karate.json")
	sameScores(t, "--model --model-version", named, fromJSON)

	// The table: same bytes for JSON and CSV input; --top sorts.
	_, table, _ := gcnclient(t, addr, "examples/karate.json")
	_, tableCSV, _ := gcnclient(t, addr, "cmd/client/testdata/karate")
	if table != tableCSV || !strings.HasPrefix(table, "node  score   class") || strings.Count(table, "\n") != 35 {
		t.Errorf("table from JSON:\n%s\nfrom CSV:\n%s\nwant the same 35 lines, header 'node  score   class'", table, tableCSV)
	}
	code, top, stderr := gcnclient(t, addr, "--top", "3", "--predictions", "--output", "csv", "examples/karate.json")
	if code != 0 {
		t.Fatalf("--top 3 --output csv: exit %d: %s", code, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(top)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != "node,score,class,p(Mr. Hi),p(Officer)" {
		t.Fatalf("--top 3 csv:\n%s\nwant a header node,score,class,p(Mr. Hi),p(Officer) and 3 rows", top)
	}
	if !(rows[1][1] >= rows[2][1] && rows[2][1] >= rows[3][1]) {
		t.Errorf("--top 3 rows not in descending score order:\n%s", top)
	}
	topJSON := scoresJSON(t, addr, "--top", "2", "--predictions", "examples/karate.json")
	if len(topJSON.NodeScores) != 2 || len(topJSON.Predictions) != 2 || topJSON.Predictions[0].Id != rows[1][0] {
		t.Errorf("--top 2 json: %d scores, %d predictions; want 2 and 2, first %s", len(topJSON.NodeScores), len(topJSON.Predictions), rows[1][0])
	}

	code, info, stderr := gcnclient(t, addr, "--info")
	var fields map[string]any
	if err := json.Unmarshal([]byte(info), &fields); code != 0 || err != nil {
		t.Fatalf("--info: exit %d, %s, output %v:\n%s", code, stderr, err, info)
	}
	// scoreClass is 0 for karate: printed only with zero values included.
	if fields["featureDim"] != 34.0 || fields["scoreClass"] != 0.0 {
		t.Errorf("--info: featureDim %v, scoreClass %v; want 34 and 0 (zero values printed)", fields["featureDim"], fields["scoreClass"])
	}
}

// TestServerError: a request the server rejects exits 1 with the server's
// message, printed once.
func TestServerError(t *testing.T) {
	srv := servertest.Start(t, "--model", "model/karate.onnx")
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"nodes": [{"id": "a", "features": [1, 2, 3]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := gcnclient(t, "--addr", srv.Addr, bad)
	want := `gcnclient: server: InvalidArgument: node 0 ("a"): 3 features, model wants 34` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, want)
	}
	code, _, stderr = gcnclient(t, "--addr", srv.Addr, "--model", "nosuch", "examples/karate.json")
	if code != 1 || strings.Count(stderr, "gcnclient: ") != 1 || !strings.Contains(stderr, "NotFound") {
		t.Errorf("unknown model: exit %d, stderr %q; want 1 and one NotFound line", code, stderr)
	}
}

// TestToken: --token-file against a server started with --auth-token-file.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	mine := filepath.Join(dir, "mine")
	wrong := filepath.Join(dir, "wrong")
	for path, text := range map[string]string{tokens: "s3cret-token\n", mine: "s3cret-token\n", wrong: "guess\n"} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := servertest.Start(t, "--model", "model/karate.onnx", "--auth-token-file", tokens)
	if code, _, stderr := gcnclient(t, "--addr", srv.Addr, "--token-file", mine, "examples/karate.json"); code != 0 {
		t.Errorf("right token: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"--token-file", wrong}, nil} {
		code, _, stderr := gcnclient(t, append(append([]string{"--addr", srv.Addr}, args...), "examples/karate.json")...)
		if code != 1 || strings.Count(stderr, "gcnclient: server: Unauthenticated") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one Unauthenticated line", args, code, stderr)
		}
	}
}

// TestCora: Cora from CSV (testdata/cora, the dataset's own files, or a
// Cora-shaped synthetic graph written as CSV when the checkout has none)
// scores as the same graph sent as JSON does.
func TestCora(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(t), "testdata", "cora")
	if _, err := os.Stat(dir); err != nil {
		t.Log("testdata/cora is missing: using a Cora-shaped synthetic graph")
		dir = writeCSV(t, graphwire.SyntheticBagOfWordsGraph(2708, 5278, 1433, 0.0127, 1))
	}
	g, err := client.ReadCSVDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 2708 || len(g.Nodes[0].Features) != 1433 {
		t.Fatalf("Cora: %d nodes, %d features; want 2708, 1433", len(g.Nodes), len(g.Nodes[0].Features))
	}
	asJSON := filepath.Join(t.TempDir(), "cora.json")
	data, err := protojson.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(asJSON, data, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, "--model", "model/cora.onnx")
	fromCSV := scoresJSON(t, "--addr", srv.Addr, dir)
	sameScores(t, "Cora CSV vs JSON", fromCSV, scoresJSON(t, "--addr", srv.Addr, asJSON))
}

// writeCSV writes g as nodes.csv and edges.csv into a new directory.
func writeCSV(t *testing.T, g *gcnpb.GraphData) string {
	t.Helper()
	dir := t.TempDir()
	var nodes, edges bytes.Buffer
	nodes.WriteString("id")
	for k := range g.Nodes[0].Features {
		nodes.WriteString(",f" + strconv.Itoa(k))
	}
	nodes.WriteString("\n")
	for _, n := range g.Nodes {
		nodes.WriteString(n.Id)
		for _, f := range n.Features {
			nodes.WriteString("," + strconv.FormatFloat(float64(f), 'g', -1, 32))
		}
		nodes.WriteString("\n")
	}
	edges.WriteString("source,target\n")
	for _, e := range g.Edges {
		edges.WriteString(e.SourceId + "," + e.TargetId + "\n")
	}
	for name, buf := range map[string]*bytes.Buffer{"nodes.csv": &nodes, "edges.csv": &edges} {
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
