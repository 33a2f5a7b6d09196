package client

import (
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/graph"
)

// Graph is a request graph as plain Go values: graph.Graph, the same type
// as package gcn's Graph (building one needs no cgo). GraphData turns it
// into the wire message.
type Graph = graph.Graph

// Node is one vertex: a unique, non-empty id and its raw features (as many
// as the model's feature dimension, GetModelInfo's feature_dim).
type Node = graph.Node

// Edge links two nodes by id. What an edge means (directed or not) is the
// model's business; models made by scripts/export_onnx.py read each edge as
// one undirected link.
type Edge = graph.Edge

// GraphData returns g as a request message. The messages share g's feature
// slices; the server's validation (unique ids, known endpoints, feature
// length, finite values) applies to the result, none is done here.
func GraphData(g Graph) *gcnpb.GraphData {
	m := &gcnpb.GraphData{
		Nodes: make([]*gcnpb.Node, len(g.Nodes)),
		Edges: make([]*gcnpb.Edge, len(g.Edges)),
	}
	nodes := make([]gcnpb.Node, len(g.Nodes)) // one allocation for all nodes
	for i, n := range g.Nodes {
		nodes[i].Id, nodes[i].Features = n.ID, n.Features
		m.Nodes[i] = &nodes[i]
	}
	edges := make([]gcnpb.Edge, len(g.Edges))
	for i, e := range g.Edges {
		edges[i].SourceId, edges[i].TargetId = e.Source, e.Target
		m.Edges[i] = &edges[i]
	}
	return m
}
