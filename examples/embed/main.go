// Command embed scores the karate club in-process with package gcn (no
// server, no RPC) and prints exactly what `gcnclient examples/karate.json`
// prints against a server on the same model. Run it from the repo root:
//
//	GCNSERVE_ORT_LIB=.ort/1.29.0/libonnxruntime.so go run ./examples/embed
package main

import (
	"context"
	"log"
	"os"

	"github.com/gcnserve/gcnserve/client"
	"github.com/gcnserve/gcnserve/gcn"
)

func main() {
	m, err := gcn.Open("model/karate.onnx")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	req, err := client.ReadJSONFile("examples/karate.json") // the tutorial's request
	if err != nil {
		log.Fatal(err)
	}
	var g gcn.Graph
	for _, n := range req.Nodes {
		g.Nodes = append(g.Nodes, gcn.Node{ID: n.Id, Features: n.Features})
	}
	for _, e := range req.Edges {
		g.Edges = append(g.Edges, gcn.Edge{Source: e.SourceId, Target: e.TargetId})
	}
	p, err := m.PredictGraph(context.Background(), g)
	if err != nil {
		log.Fatal(err)
	}
	t := client.Table{Scores: p.Scores}
	for i, n := range g.Nodes {
		t.IDs = append(t.IDs, n.ID)
		t.Classes = append(t.Classes, m.Info().ClassNames[p.ClassIndex[i]])
	}
	if err := client.WriteTable(os.Stdout, t); err != nil {
		log.Fatal(err)
	}
}
