package client

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// ReadJSON reads a GraphData in protobuf's JSON form (protojson), the
// tutorial's request format, as in examples/karate.json. Unknown fields are
// an error. Gzip-compressed input is recognized and decompressed.
func ReadJSON(r io.Reader) (*gcnpb.GraphData, error) {
	r, closeGzip, err := maybeGzip(r)
	if err != nil {
		return nil, err
	}
	defer closeGzip()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	g := &gcnpb.GraphData{}
	if err := protojson.Unmarshal(data, g); err != nil {
		return nil, fmt.Errorf("not a GraphData in JSON form: %w", err)
	}
	return g, nil
}

// ReadJSONFile is ReadJSON on a file; errors name the file.
func ReadJSONFile(path string) (*gcnpb.GraphData, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	g, err := ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// ReadCSV reads a graph from two CSV streams in the layout
// scripts/export_onnx.py trains from:
//
//   - nodes: a header whose first column is "id"; every other column is a
//     feature, in order, except columns named "label" and "split", which
//     are skipped (so a training file is a valid request). Each row is a
//     node id and its feature values.
//   - edges: the header "source,target" (or "src,dst"), then one edge per
//     row, by node id.
//
// Gzip-compressed input is recognized and decompressed. Errors name the
// line and column. Ids are not checked against each other here: the server
// reports duplicate ids and unknown endpoints.
func ReadCSV(nodes, edges io.Reader) (*gcnpb.GraphData, error) {
	g := &gcnpb.GraphData{}
	if err := readNodes(nodes, g); err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	if err := readEdges(edges, g); err != nil {
		return nil, fmt.Errorf("edges: %w", err)
	}
	return g, nil
}

// ReadCSVFiles is ReadCSV on two files; errors name the file.
func ReadCSVFiles(nodesPath, edgesPath string) (*gcnpb.GraphData, error) {
	g := &gcnpb.GraphData{}
	if err := readFile(nodesPath, func(r io.Reader) error { return readNodes(r, g) }); err != nil {
		return nil, err
	}
	if err := readFile(edgesPath, func(r io.Reader) error { return readEdges(r, g) }); err != nil {
		return nil, err
	}
	return g, nil
}

// ReadCSVDir reads dir/nodes.csv and dir/edges.csv (or nodes.csv.gz,
// edges.csv.gz) with ReadCSVFiles.
func ReadCSVDir(dir string) (*gcnpb.GraphData, error) {
	find := func(name string) (string, error) {
		for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".gz")} {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s: no %s or %s.gz", dir, name, name)
	}
	nodes, err := find("nodes.csv")
	if err != nil {
		return nil, err
	}
	edges, err := find("edges.csv")
	if err != nil {
		return nil, err
	}
	return ReadCSVFiles(nodes, edges)
}

func readFile(path string, read func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := read(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// maybeGzip returns r decompressed when it starts with the gzip magic
// bytes, else r itself, and a function that releases the decompressor.
func maybeGzip(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return br, func() {}, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, nil, err
	}
	return zr, func() { zr.Close() }, nil
}

func newCSVReader(r io.Reader) (*csv.Reader, func(), error) {
	r, closeGzip, err := maybeGzip(r)
	if err != nil {
		return nil, nil, err
	}
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	return cr, closeGzip, nil
}

func readNodes(r io.Reader, g *gcnpb.GraphData) error {
	cr, done, err := newCSVReader(r)
	if err != nil {
		return err
	}
	defer done()
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return errors.New("empty file; want a header like id,f0,f1")
	}
	if err != nil {
		return err
	}
	header = slices.Clone(header) // ReuseRecord: the next Read overwrites it
	if strings.TrimPrefix(header[0], "\ufeff") != "id" {
		return fmt.Errorf("line 1: first column %q, want id", header[0])
	}
	// Feature columns: everything after id but label and split.
	var cols []int
	for i, name := range header[1:] {
		if name != "label" && name != "split" {
			cols = append(cols, i+1)
		}
	}
	var all []float32 // one growing array; each node's features are a window of it
	var ids []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		if rec[0] == "" {
			return fmt.Errorf("line %d: empty node id", line)
		}
		// Clone: a field shares its string with the whole line.
		ids = append(ids, strings.Clone(rec[0]))
		for _, c := range cols {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[c]), 32)
			if err != nil {
				return fmt.Errorf("line %d, column %d (%s): %q is not a number", line, c+1, header[c], rec[c])
			}
			all = append(all, float32(v))
		}
	}
	f := len(cols)
	nodes := make([]gcnpb.Node, len(ids))
	g.Nodes = make([]*gcnpb.Node, len(ids))
	for i, id := range ids {
		nodes[i].Id = id
		nodes[i].Features = all[i*f : (i+1)*f : (i+1)*f]
		g.Nodes[i] = &nodes[i]
	}
	return nil
}

func readEdges(r io.Reader, g *gcnpb.GraphData) error {
	cr, done, err := newCSVReader(r)
	if err != nil {
		return err
	}
	defer done()
	cr.FieldsPerRecord = 2
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return errors.New("empty file, want a header source,target")
	}
	if err != nil {
		return err
	}
	if h := strings.TrimPrefix(header[0], "\ufeff") + "," + header[1]; h != "source,target" && h != "src,dst" {
		return fmt.Errorf("line 1: header %q, want source,target", h)
	}
	var src, dst []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		// ReuseRecord reuses the slice, not the strings: keeping them is safe.
		src, dst = append(src, rec[0]), append(dst, rec[1])
	}
	edges := make([]gcnpb.Edge, len(src))
	g.Edges = make([]*gcnpb.Edge, len(src))
	for i := range edges {
		edges[i].SourceId, edges[i].TargetId = src[i], dst[i]
		g.Edges[i] = &edges[i]
	}
	return nil
}
