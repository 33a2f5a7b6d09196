// Package graph is a request graph as plain Go values: nodes with ids and
// features, edges between ids. It is the one Graph type of gcnserve's Go
// API: the inference library (gcn.Graph) and the client (client.Graph) are
// aliases of it, so a program that builds a graph can both predict in
// process and send it to a server without converting.
//
// It imports nothing: using it needs neither cgo and ONNX Runtime (the
// library's) nor gRPC and protobuf (the client's). Validation (unique
// non-empty ids, known endpoints, feature count, finite values) is done by
// whoever runs the graph, the library or the server, with the same checks
// and messages.
package graph

// Graph is a graph as Go values, the shape of the gRPC GraphData message:
// nodes with ids and features, edges between ids. Row i of a prediction is
// Nodes[i].
type Graph struct {
	Nodes []Node
	Edges []Edge
}

// Node is one vertex: a unique, non-empty id and its raw features, exactly
// as many as the model's feature dimension (gcn Info.FeatureDim, the
// server's GetModelInfo feature_dim), all finite.
type Node struct {
	ID       string
	Features []float32
}

// Edge links two node ids. What an edge means (directed or not) is the
// model's business; models made by scripts/export_onnx.py read each edge as
// one undirected link.
type Edge struct {
	Source, Target string
}
