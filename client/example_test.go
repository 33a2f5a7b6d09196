package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/gcnserve/gcnserve/client"
)

// Dial a server, score the tutorial's karate graph and print the table
// gcnclient prints.
func Example() {
	c, err := client.Dial("localhost:9999")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	g, err := client.ReadJSONFile("examples/karate.json")
	if err != nil {
		log.Fatal(err)
	}
	g.IncludePredictions = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.ProcessGraph(ctx, g)
	if err != nil {
		log.Fatal(err) // a gRPC status: status.Code(err) says which kind
	}
	t, err := client.TableFromResult(g, res)
	if err != nil {
		log.Fatal(err)
	}
	client.WriteTable(os.Stdout, t.WithoutProbabilities())
}

// Production options: TLS with a private CA, a token file the server's
// --auth-token-file also reads, and a headless Kubernetes service as the
// target so calls are balanced over every pod.
func ExampleDial() {
	c, err := client.Dial("dns:///gcnserve-headless.ml.svc.cluster.local:9999",
		client.WithTLS("/etc/gcnserve/ca.pem"),
		client.WithTokenFile("/var/run/secrets/gcnserve/token"),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// A graph from Go values.
func ExampleGraph() {
	g := client.Graph{
		Nodes: []client.Node{
			{ID: "alice", Features: []float32{1, 0}},
			{ID: "bob", Features: []float32{0, 1}},
		},
		Edges: []client.Edge{{Source: "alice", Target: "bob"}},
	}
	m := client.GraphData(g)
	fmt.Println(len(m.Nodes), "nodes,", len(m.Edges), "edge, from", m.Edges[0].SourceId)
	// Output: 2 nodes, 1 edge, from alice
}

// The CSV layout scripts/export_onnx.py trains from is a valid request:
// label and split columns are skipped.
func ExampleReadCSV() {
	nodes := strings.NewReader("id,label,split,f0,f1\nalice,0,train,1,0\nbob,,,0,1\n")
	edges := strings.NewReader("source,target\nalice,bob\n")
	g, err := client.ReadCSV(nodes, edges)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range g.Nodes {
		fmt.Println(n.Id, n.Features)
	}
	// Output:
	// alice [1 0]
	// bob [0 1]
}

// Print scores as gcnclient does, here for the two highest.
func ExampleWriteTable() {
	t := client.Table{
		IDs:     []string{"alice", "bob", "carol"},
		Scores:  []float32{0.25, 0.875, 0.5},
		Classes: []string{"no", "yes", "yes"},
	}
	client.WriteTable(os.Stdout, t.Top(2))
	// Output:
	// node   score   class
	// bob    0.8750  yes
	// carol  0.5000  yes
}
