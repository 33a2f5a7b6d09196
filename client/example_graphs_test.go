package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gcnserve/gcnserve/client"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// Upload a graph once, change it, and score two of its nodes: the scores
// equal ProcessGraph on the whole current graph (docs/STATEFUL.md).
func ExampleClient_ScoreNodes() {
	c, err := client.Dial("localhost:9999")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	g, err := client.ReadJSONFile("examples/karate.json")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.LoadGraph(ctx, "club", g, nil); err != nil {
		log.Fatal(err)
	}
	// ApplyDelta adds an idempotency key, so a retried delta applies once.
	d, err := c.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "club",
		AddEdges: []*gcnpb.Edge{{SourceId: "0", TargetId: "33"}}})
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "club", NodeIds: []string{"0", "33"},
		MinRevision: d.Revision})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("revision %d: node 0 %.3f, node 33 %.3f\n", res.Revision, res.NodeScores["0"], res.NodeScores["33"])
}
