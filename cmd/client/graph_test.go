package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func runOK(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(args, strings.NewReader(stdin), &out, &errOut); code != 0 {
		t.Fatalf("gcnclient %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// TestGraphSubcommands drives every 'gcnclient graph' subcommand against
// the real binary: load, delta, score (equal to ProcessGraph on the
// exported graph), get, list, export, load of the export, delete.
func TestGraphSubcommands(t *testing.T) {
	t.Chdir(testenv.RepoRoot(t))
	srv := servertest.Start(t, "--model", filepath.Join("internal", "graphs", "testdata", "karate_rf.onnx"))
	addr := "--addr=" + srv.Addr

	runOK(t, "", addr, "graph", "load", "club", "examples/karate.json")
	out := runOK(t, `{"add_edges": [{"source_id": "0", "target_id": "33"}], "remove_nodes": ["5"]}`, addr, "graph", "delta", "club", "-")
	res := &gcnpb.DeltaResponse{}
	if err := protojson.Unmarshal([]byte(out), res); err != nil || res.Revision != 2 {
		t.Fatalf("graph delta printed %q (%v); want revision 2", out, err)
	}
	out = runOK(t, "", addr, "--output", "json", "graph", "score", "club", "0", "33")
	score := &gcnpb.ScoreResponse{}
	if err := protojson.Unmarshal([]byte(out), score); err != nil || score.Revision != 2 || len(score.NodeScores) != 2 {
		t.Fatalf("graph score printed %q (%v)", out, err)
	}
	exported := runOK(t, "", addr, "graph", "export", "club")
	whole := &gcnpb.GraphData{}
	if err := protojson.Unmarshal([]byte(exported), whole); err != nil || len(whole.Nodes) != 33 {
		t.Fatalf("graph export: %d nodes (%v), want 33", len(whole.Nodes), err)
	}
	ref := &gcnpb.GCNResult{}
	if err := protojson.Unmarshal([]byte(runOK(t, exported, addr, "--output", "json", "-")), ref); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"0", "33"} {
		if d := math.Abs(float64(score.NodeScores[id] - ref.NodeScores[id])); d > 1e-5 {
			t.Errorf("node %s: graph score %v, ProcessGraph %v", id, score.NodeScores[id], ref.NodeScores[id])
		}
	}
	table := runOK(t, "", addr, "graph", "score", "club", "0")
	if !strings.Contains(table, "revision 2") || !strings.Contains(table, "Mr. Hi") && !strings.Contains(table, "Officer") {
		t.Errorf("graph score table:\n%s", table)
	}
	f := filepath.Join(t.TempDir(), "club.json")
	if err := os.WriteFile(f, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, "", addr, "graph", "create", "copy", f)
	info := &gcnpb.GraphInfo{}
	if err := protojson.Unmarshal([]byte(runOK(t, "", addr, "graph", "get", "copy")), info); err != nil || info.Nodes != 33 || info.Revision != 1 {
		t.Fatalf("graph get copy: %v (%v)", info, err)
	}
	if l := runOK(t, "", addr, "graph", "list"); !strings.Contains(l, `"club"`) || !strings.Contains(l, `"copy"`) {
		t.Fatalf("graph list:\n%s", l)
	}
	runOK(t, "", addr, "graph", "delete", "copy")
	var errOut bytes.Buffer
	if code := run([]string{addr, "graph", "get", "copy"}, nil, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "NotFound") {
		t.Fatalf("get of a deleted graph: exit %d, %s", code, errOut.String())
	}
	if code := run([]string{addr, "graph", "frobnicate"}, nil, &bytes.Buffer{}, &errOut); code != 2 {
		t.Fatalf("unknown subcommand: exit %d, want 2", code)
	}
}
