// Package gcn runs graph convolutional networks exported to ONNX, in
// process, through ONNX Runtime: the inference engine of gcnserve as a
// library, with the same validation, errors and batching as the server.
//
// Open a model once and share it: every method is safe for concurrent use,
// and one ONNX Runtime session serves every call.
//
//	m, err := gcn.Open("model/karate.onnx")
//	if err != nil { ... }
//	defer m.Close()
//	p, err := m.PredictGraph(ctx, gcn.Graph{Nodes: nodes, Edges: edges})
//	// p.Scores[i] is g.Nodes[i]'s score, p.ClassIndex[i] its class.
//
// Graphs come in two forms. Graph is Go values keyed by node id, validated
// exactly as the server validates a request (the error names the node or
// edge); it is package graph's Graph, the type package client sends too. Tensors is the model's input form, a feature matrix and an edge
// index array, read in place without a copy, for callers that already hold
// arrays.
//
// The model contract: inputs "x" float32 [N, F] and "edge_index" int64
// [2, E] (row 0 sources, row 1 targets, indexes into x), one float32 output
// [N, C]; F and C are read from the model. Optional metadata_props describe
// the classes and what a node's score means (see Info). Models made by
// scripts/export_onnx.py carry everything they need (normalization, self
// loops, class names) inside the file.
//
// Errors a caller's client should see are *Error values whose Kind says what
// went wrong (KindInvalidArgument, KindTooLarge, ...); context errors are
// returned as they are. The ONNX Runtime shared library is loaded by the
// first Open (WithLibraryPath, else $GCNSERVE_ORT_LIB, else the per-user copy
// 'make ort' installs, else the dynamic loader's search path) and stays
// loaded for the life of the process.
//
// The package imports ONNX Runtime's binding and the standard library, and
// no gRPC or protobuf: an embedding program links no transport.
package gcn
