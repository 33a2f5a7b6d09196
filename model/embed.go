// Package model holds the bundled models. Karate is compiled into every
// gcnserve binary, so a lone binary with no files beside it still serves the
// Karate example (see model/README.md).
package model

import _ "embed"

// Karate is model/karate.onnx: the two-layer GCN for Zachary's karate club
// (34 nodes, 2 classes) whose golden outputs are in testdata/karate.
//
//go:embed karate.onnx
var Karate []byte
