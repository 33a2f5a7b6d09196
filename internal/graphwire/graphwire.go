// Package graphwire decodes the protobuf wire bytes of a GraphData request
// straight into the tensors the model runs on, and encodes a GCNResult
// straight to wire bytes.
//
// Decoding through the generated structs costs one allocation per node and
// per edge plus a copy of every id, and that dominated the server's CPU on
// big requests. Decode instead allocates its outputs once (the feature
// matrix, the edge index, the id slice and the id index) and makes node ids
// zero-copy strings over the request buffer.
//
// Decode accepts exactly the encodings proto.Unmarshal accepts for
// gcnpb.GraphData, and it and FromMessage validate a request the same way, in
// the same order, with the same messages, so a request gets the same answer
// whichever path decoded it. The validation itself, and the graph it
// yields, live in internal/graphcheck, which imports no protobuf: the public
// gcn package validates there too.
package graphwire

import (
	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/graphcheck"
)

// Limits bounds one request. Zero (or a negative value) means unlimited.
type Limits = graphcheck.Limits

// Graph is a decoded, validated request (graphcheck.Graph).
type Graph = graphcheck.Graph

// Source is a graph given node by node and edge by edge (graphcheck.Source).
type Source = graphcheck.Source

// FromSource is graphcheck.FromSource: Decode's checks, order and messages
// over a Source.
func FromSource(src Source, featureDim int, lim Limits) (*Graph, error) {
	return graphcheck.FromSource(src, featureDim, lim)
}

// FirstNonFinite is graphcheck.FirstNonFinite.
func FirstNonFinite(f []float32) int { return graphcheck.FirstNonFinite(f) }

// Errors are *gcnerr.Error (gcn.Error for library users): a request that
// breaks the contract in gcn.proto (malformed wire bytes, or a node or edge
// that fails validation) is InvalidArgument, its message naming the
// offending node or edge by 0-based request index; a request over Limits is
// TooLarge, its message naming the count and the limit.

func invalidf(format string, args ...any) error {
	return gcnerr.New(gcnerr.InvalidArgument, format, args...)
}

// The shared validation under the names Decode uses.
type (
	validator = graphcheck.Validator
	edgeChunk = graphcheck.EdgeChunk
	nodeFault = graphcheck.NodeFault
)

const (
	lookupChunk   = graphcheck.LookupChunk
	parallelEdges = graphcheck.ParallelEdges
	maxParts      = graphcheck.MaxParts
)

func newValidator(featureDim int, ids []string) validator {
	return graphcheck.NewValidator(featureDim, ids)
}
func checkLimits(nodes, edges int, lim Limits) error {
	return graphcheck.CheckLimits(nodes, edges, lim)
}
func checkFeatureDim(featureDim int) error { return graphcheck.CheckFeatureDim(featureDim) }
func isNonFinite(bits uint32) bool         { return graphcheck.IsNonFinite(bits) }
func anyNonFinite(v []byte) bool           { return graphcheck.AnyNonFinite(v) }
func indexNodes(v *validator, starts []int, parse func(part, from, to int) *nodeFault) error {
	return graphcheck.IndexNodes(v, starts, parse)
}
func resolveEdges(v *validator, edgeIndex []int64, starts []int, fill func(part int, c *edgeChunk) error) error {
	return graphcheck.ResolveEdges(v, edgeIndex, starts, fill)
}

// Resolver chooses the model a request names and returns its feature
// dimension; its error (for example "no such model") ends decoding and is
// returned as is. Decode calls it once, after the cheap top-level pass and
// before anything proportional to the request is allocated.
type Resolver func(modelName, modelVersion string) (featureDim int, err error)

// Fixed returns a Resolver for one model with featureDim features that
// ignores the names a request gives.
func Fixed(featureDim int) Resolver {
	return func(string, string) (int, error) { return featureDim, nil }
}

// FromMessage builds the same Graph as Decode from a generated message, with
// the same validation and the same errors. It is the reference Decode is
// tested against, and the path for anyone already holding a
// *gcnpb.GraphData (the HTTP/JSON transport). A nil message is an empty graph.
func FromMessage(m *gcnpb.GraphData, featureDim int, lim Limits) (*Graph, error) {
	g, err := FromSource(messageSource{m}, featureDim, lim)
	if err != nil {
		return nil, err
	}
	g.IncludePredictions = m.GetIncludePredictions()
	g.ModelName, g.ModelVersion = m.GetModelName(), m.GetModelVersion()
	return g, nil
}

// messageSource reads a generated GraphData as a Source.
type messageSource struct{ m *gcnpb.GraphData }

func (s messageSource) NumNodes() int { return len(s.m.GetNodes()) }
func (s messageSource) NumEdges() int { return len(s.m.GetEdges()) }
func (s messageSource) Node(i int) (string, []float32) {
	n := s.m.GetNodes()[i]
	return n.GetId(), n.GetFeatures()
}
func (s messageSource) Edge(j int) (string, string) {
	e := s.m.GetEdges()[j]
	return e.GetSourceId(), e.GetTargetId()
}
