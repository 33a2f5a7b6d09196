package gcn_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/gcnserve/gcnserve/gcn"
)

// karateMember is a karate-club member's features: the bundled model takes
// a one-hot member index (34 features).
func karateMember(i int) []float32 {
	f := make([]float32, 34)
	f[i] = 1
	return f
}

// Score a graph given as Go values: the library validates it as the server
// does and returns one row per node, in node order.
func Example() {
	m, err := gcn.Open("../model/karate.onnx")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	g := gcn.Graph{
		Nodes: []gcn.Node{
			{ID: "instructor", Features: karateMember(0)},
			{ID: "student", Features: karateMember(1)},
			{ID: "officer", Features: karateMember(33)},
		},
		Edges: []gcn.Edge{{Source: "instructor", Target: "student"}},
	}
	p, err := m.PredictGraph(context.Background(), g)
	if err != nil {
		log.Fatal(err)
	}
	info := m.Info()
	for i, n := range g.Nodes {
		// p.Scores[i] is the probability that the member sides with Mr. Hi.
		fmt.Printf("%s: %s (score above 0.5: %v)\n", n.ID, info.ClassNames[p.ClassIndex[i]], p.Scores[i] > 0.5)
	}
	// Output:
	// instructor: Mr. Hi (score above 0.5: true)
	// student: Mr. Hi (score above 0.5: true)
	// officer: Officer (score above 0.5: false)
}

// Predict takes the model's input tensors as they are, without a copy:
// the feature matrix [N, F] and the edge index [2, E] (sources, then
// targets).
func ExampleModel_Predict() {
	m, err := gcn.Open("../model/karate.onnx", gcn.WithBatching(gcn.DefaultBatchOptions()))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	features := append(karateMember(0), karateMember(33)...)
	p, err := m.Predict(context.Background(), gcn.Tensors{
		NumNodes:  2,
		Features:  features,
		EdgeIndex: []int64{0 /* source */, 1 /* target */},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d nodes, %d classes, batching %v\n", len(p.Scores), p.NumClasses, m.Info().Batching)
	// Output: 2 nodes, 2 classes, batching true
}

// Refusals are *gcn.Error values whose message names what is wrong; the
// server maps each Kind to one gRPC code.
func ExampleError() {
	m, err := gcn.Open("../model/karate.onnx")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	_, err = m.PredictGraph(context.Background(), gcn.Graph{
		Nodes: []gcn.Node{{ID: "a", Features: karateMember(0)}},
		Edges: []gcn.Edge{{Source: "a", Target: "n9"}},
	})
	var e *gcn.Error
	if errors.As(err, &e) && e.Kind == gcn.KindInvalidArgument {
		fmt.Println("invalid:", e.Msg)
	}
	// Output: invalid: edge 0: target "n9" is not a node id
}
