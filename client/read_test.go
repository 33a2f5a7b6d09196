package client

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestReadKarate: the tutorial JSON and its CSV form (cmd/client/testdata,
// plain and gzip-compressed) read to the same message.
func TestReadKarate(t *testing.T) {
	fromJSON, err := ReadJSONFile("../examples/karate.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(fromJSON.Nodes) != 34 || len(fromJSON.Edges) != 78 || len(fromJSON.Nodes[0].Features) != 34 {
		t.Fatalf("karate.json: %d nodes, %d edges, %d features; want 34, 78, 34",
			len(fromJSON.Nodes), len(fromJSON.Edges), len(fromJSON.Nodes[0].Features))
	}
	fromCSV, err := ReadCSVDir("../cmd/client/testdata/karate")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fromJSON, fromCSV) {
		t.Error("CSV form differs from karate.json")
	}

	dir := t.TempDir()
	for _, name := range []string{"nodes.csv", "edges.csv"} {
		data, err := os.ReadFile(filepath.Join("../cmd/client/testdata/karate", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".gz"), gzipped(t, data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fromGzip, err := ReadCSVDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fromJSON, fromGzip) {
		t.Error("gzip-compressed CSV differs from karate.json")
	}
	data, _ := os.ReadFile("../examples/karate.json")
	if g, err := ReadJSON(bytes.NewReader(gzipped(t, data))); err != nil || !proto.Equal(g, fromJSON) {
		t.Errorf("gzip-compressed JSON: %v, equal %v", err, proto.Equal(g, fromJSON))
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReadCSVTrainingFile: label and split columns are skipped wherever
// they are, the rest are features in order.
func TestReadCSVTrainingFile(t *testing.T) {
	nodes := "id,label,split,f0,f1\na,0,train,0.5,-1e-3\nb,,,2,3\n"
	edges := "source,target\na,b\nb,a\n"
	g, err := ReadCSV(strings.NewReader(nodes), strings.NewReader(edges))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 2 || g.Nodes[0].Id != "a" || !equal(g.Nodes[0].Features, 0.5, -1e-3) || !equal(g.Nodes[1].Features, 2, 3) {
		t.Errorf("nodes %v, want a:[0.5 -0.001] b:[2 3]", g.Nodes)
	}
	if len(g.Edges) != 2 || g.Edges[1].SourceId != "b" || g.Edges[1].TargetId != "a" {
		t.Errorf("edges %v, want a-b, b-a", g.Edges)
	}
	g, err = ReadCSV(strings.NewReader("id,f0,label\nx,7,3\n"), strings.NewReader("src,dst\n"))
	if err != nil || len(g.Nodes) != 1 || !equal(g.Nodes[0].Features, 7) || len(g.Edges) != 0 {
		t.Errorf("trailing label column, src,dst header: %v %v", g, err)
	}
}

func equal(got []float32, want ...float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestReadCSVErrors(t *testing.T) {
	const okNodes, okEdges = "id,f0\na,1\n", "source,target\na,a\n"
	for _, tc := range []struct{ name, nodes, edges, want string }{
		{"empty nodes", "", okEdges, "nodes: empty file"},
		{"no id column", "node,f0\na,1\n", okEdges, `nodes: line 1: first column "node", want id`},
		{"not a number", "id,f0,f1\na,1,x\n", okEdges, `nodes: line 2, column 3 (f1): "x" is not a number`},
		{"short row", "id,f0,f1\na,1\n", okEdges, "nodes: record on line 2: wrong number of fields"},
		{"empty id", "id,f0\n,1\n", okEdges, "nodes: line 2: empty node id"},
		{"bad edge header", okNodes, "from,to\na,a\n", `edges: line 1: header "from,to", want source,target`},
		{"three edge columns", okNodes, "source,target\na,a,a\n", "edges: record on line 2: wrong number of fields"},
		{"empty edges", okNodes, "", "edges: empty file"},
	} {
		_, err := ReadCSV(strings.NewReader(tc.nodes), strings.NewReader(tc.edges))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ReadCSVDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no nodes.csv or nodes.csv.gz") {
		t.Errorf("empty directory: got %v", err)
	}
}

func TestReadJSONErrors(t *testing.T) {
	_, err := ReadJSON(strings.NewReader(`{"nodes": [{"id": "a", "weight": 1}]}`))
	if err == nil || !strings.Contains(err.Error(), "not a GraphData in JSON form") {
		t.Errorf("unknown field: got %v", err)
	}
	if _, err := ReadJSONFile("no/such/file.json"); err == nil {
		t.Error("missing file: got nil error")
	}
}
