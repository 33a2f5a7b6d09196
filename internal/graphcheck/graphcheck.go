// Package graphcheck turns a graph given node by node and edge by edge into
// the tensors a model runs on, validating it against the contract of
// gcn.proto: unique, non-empty, valid UTF-8 node ids; exactly featureDim
// finite features per node; edge endpoints that name nodes; counts within
// Limits. The server's wire decoder (internal/graphwire) and the public
// library (gcn.PredictGraph) both validate here, so a graph gets the same
// answer, with the same message, whichever way it arrives.
//
// It imports the standard library only (and gcnerr for its error type): the
// public gcn package depends on it, and an embedding program must not pull in
// gRPC or protobuf.
package graphcheck

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// Limits bounds one request. Zero (or a negative value) means unlimited.
type Limits struct {
	MaxNodes, MaxEdges int
}

// Graph is a decoded, validated request: every node id is non-empty, valid
// UTF-8 and unique, every node has exactly featureDim finite features, and
// every edge endpoint names a node.
type Graph struct {
	// IDs holds the node ids in request order. After graphwire.Decode they
	// alias the request buffer (no copy); after FromSource they are the
	// Source's strings.
	IDs []string
	// Features is the len(IDs) x featureDim feature matrix, row-major: node
	// i's features are Features[i*featureDim : (i+1)*featureDim].
	Features []float32
	// EdgeIndex is the 2 x NumEdges edge index, row-major: EdgeIndex[:E]
	// holds the source node indexes and EdgeIndex[E:] the target node
	// indexes, in request edge order.
	EdgeIndex []int64
	// IncludePredictions is GraphData.include_predictions (set by the
	// transports; FromSource leaves it false).
	IncludePredictions bool
	// ModelName and ModelVersion are GraphData.model_name and model_version
	// (empty: the default model, its highest served version).
	ModelName, ModelVersion string
}

// NumNodes returns the number of nodes.
func (g *Graph) NumNodes() int { return len(g.IDs) }

// NumEdges returns the number of edges.
func (g *Graph) NumEdges() int { return len(g.EdgeIndex) / 2 }

// Errors are *gcnerr.Error (gcn.Error for library users): a request that
// breaks the contract in gcn.proto (malformed wire bytes, or a node or edge
// that fails validation) is InvalidArgument, its message naming the
// offending node or edge by 0-based request index; a request over Limits is
// TooLarge, its message naming the count and the limit.

func invalidf(format string, args ...any) error {
	return gcnerr.New(gcnerr.InvalidArgument, format, args...)
}

func tooLargef(format string, args ...any) error {
	return gcnerr.New(gcnerr.TooLarge, format, args...)
}

// CheckLimits reports the first count over its limit, nodes first. A graph
// also cannot hold more nodes than an int32 node index can name.
func CheckLimits(nodes, edges int, lim Limits) error {
	if lim.MaxNodes > 0 && nodes > lim.MaxNodes {
		return tooLargef("request has %d nodes, limit is %d (--max-nodes)", nodes, lim.MaxNodes)
	}
	if lim.MaxEdges > 0 && edges > lim.MaxEdges {
		return tooLargef("request has %d edges, limit is %d (--max-edges)", edges, lim.MaxEdges)
	}
	if nodes > math.MaxInt32 {
		return tooLargef("request has %d nodes, a graph holds at most %d", nodes, math.MaxInt32)
	}
	return nil
}

// CheckFeatureDim refuses a negative feature dimension (a caller's bug, not
// bad input).
func CheckFeatureDim(featureDim int) error {
	if featureDim < 0 {
		return fmt.Errorf("graphcheck: feature dimension %d is negative", featureDim)
	}
	return nil
}

// Validator applies the per-node and per-edge checks that graphwire.Decode
// and FromSource share. Both report the first failing node in request order,
// then the first failing edge in request order, which is what makes their
// first error, and so their message, the same for the same request.
type Validator struct {
	featureDim int
	// index maps each accepted node id to its node index.
	index *idIndex
}

// NewValidator returns a Validator for the nodes of a graph of featureDim
// features whose ids will be ids (the Graph's IDs, len(ids) nodes): Node
// and IndexNodes store each accepted id there.
func NewValidator(featureDim int, ids []string) Validator {
	return Validator{featureDim: featureDim, index: newIDIndex(ids)}
}

// Accepts reports whether a node with this id, feature count and first
// non-finite feature bad (-1: none) passes every per-node check but the
// one for duplicate ids, which IndexNodes makes.
func (v *Validator) Accepts(id string, count, bad int) bool {
	return id != "" && count == v.featureDim && bad < 0
}

// Node checks node i, whose id is valid UTF-8 (graphwire.Decode checks that
// while parsing, FromSource before calling), and indexes it. count is the number
// of features the node sent; bad is the index of its first non-finite
// feature among the first featureDim, or -1, and badBits that feature's bits.
// Nodes 0 .. i-1 must be indexed already.
func (v *Validator) Node(i int, id string, count, bad int, badBits uint32) error {
	if id == "" {
		return invalidf("node %d: empty id", i)
	}
	x := v.index
	key, h := x.hash(id)
	slot, j, dup := x.probe(id, key, h)
	if dup {
		return duplicateID(i, id, j)
	}
	if count != v.featureDim {
		return invalidf("node %d (%s): %d features, model wants %d", i, QuoteID(id), count, v.featureDim)
	}
	if bad >= 0 {
		return invalidf("node %d (%s): feature %d is %s", i, QuoteID(id), bad, nonFiniteName(badBits))
	}
	x.ids[i] = id
	x.put(slot, i, key, h)
	return nil
}

func duplicateID(i int, id string, j int32) error {
	return invalidf("node %d: duplicate id %s (also node %d)", i, QuoteID(id), j)
}

// NodeFault is the first node of a part that a parse function could not
// accept (see IndexNodes).
type NodeFault struct {
	I int // the node's index
	// Err, when set, is the node's error (malformed, id not UTF-8),
	// reported as is once the nodes before it are indexed. Otherwise the
	// node's fields follow, as Node takes them, and Node names its error.
	Err        error
	ID         string
	Count, Bad int
	BadBits    uint32
}

// parseParts runs parse on every part, each on its own goroutine but part
// 0, and returns their faults.
func parseParts(starts []int, nodes int, parse func(part, from, to int) *NodeFault) [MaxParts]*NodeFault {
	var run struct { // one allocation
		parts  partGroup
		faults [MaxParts]*NodeFault
	}
	for p := 1; p < len(starts); p++ {
		run.parts.Go(p, func() { run.faults[p] = parse(p, starts[p], partEnd(starts, p, nodes)) })
	}
	run.faults[0] = parse(0, 0, partEnd(starts, 0, nodes))
	run.parts.Wait()
	return run.faults
}

// partEnd is where part p of n items split at starts ends.
func partEnd(starts []int, p, n int) int {
	if p+1 < len(starts) {
		return starts[p+1]
	}
	return n
}

// IndexNodes runs the node pass of a graph whose nodes are split into
// len(starts) parts: part p is nodes starts[p] .. starts[p+1]-1 (the last
// part ends at the node count), and starts[0] is 0. parse(p, from, to) reads
// part p's nodes (on its own goroutine when there are several parts):
// for each it stores the id in the Graph's IDs and the features in its
// row, and it stops at the first node that is malformed or that
// v.Accepts refuses, returning a NodeFault for it; nil when every node
// passed. Then the ids are indexed in node order, and IndexNodes returns
// the error of the first failing node, exactly as calling Node for every
// node in order would.
func IndexNodes(v *Validator, starts []int, parse func(part, from, to int) *NodeFault) error {
	x := v.index
	nodes := len(x.ids)
	var faults [MaxParts]*NodeFault
	if len(starts) == 1 {
		faults[0] = parse(0, 0, nodes)
	} else {
		faults = parseParts(starts, nodes, parse)
	}
	c := chunkPool.Get().(*EdgeChunk)
	defer chunkPool.Put(c)
	keys, hashes := c.keys[:], c.hashes[:]
	for p := range starts {
		stop, fault := partEnd(starts, p, nodes), faults[p]
		if fault != nil {
			stop = fault.I
		}
		for from := starts[p]; from < stop; from += len(keys) {
			ids := x.ids[from:min(from+len(keys), stop)]
			// Hash a batch first: the inserts are then a tight loop of
			// independent cache misses.
			for k, id := range ids {
				keys[k], hashes[k] = x.hash(id)
			}
			x.touch(hashes[:len(ids)])
			for k := range ids {
				if j, dup := x.insert(from+k, keys[k], hashes[k]); dup {
					return duplicateID(from+k, ids[k], j)
				}
			}
		}
		if fault != nil {
			if fault.Err != nil {
				return fault.Err
			}
			if err := v.Node(fault.I, fault.ID, fault.Count, fault.Bad, fault.BadBits); err != nil {
				return err
			}
			return fmt.Errorf("graphcheck: internal error: node %d was refused, then accepted", fault.I)
		}
	}
	return nil
}

// edge resolves edge j's endpoints to node indexes.
//
// graphwire.Decode rejects an endpoint that is not valid UTF-8 while parsing, before
// looking anything up. FromSource checks UTF-8 only after a lookup fails
// (every node id is valid UTF-8, so a found endpoint is too), which keeps its
// hot path cheap and reports the same first error.
func (v *Validator) edge(j int, source, target string) (s, t int32, err error) {
	s, okS := v.index.lookup(source)
	t, okT := v.index.lookup(target)
	if okS && okT {
		return s, t, nil
	}
	if !okS && !utf8.ValidString(source) {
		return 0, 0, invalidf("edge %d: source id is not valid UTF-8", j)
	}
	if !utf8.ValidString(target) {
		return 0, 0, invalidf("edge %d: target id is not valid UTF-8", j)
	}
	if !okS {
		return 0, 0, invalidf("edge %d: source %s is not a node id", j, QuoteID(source))
	}
	return 0, 0, invalidf("edge %d: target %s is not a node id", j, QuoteID(target))
}

// maxQuotedID bounds how much of an id an error message repeats: ids are
// client-chosen and may be megabytes long.
const maxQuotedID = 64

// QuoteID quotes a client-given id for an error message, cut to
// maxQuotedID bytes on a rune boundary with "..." after the closing quote
// when it was cut: the form every message naming a node uses.
func QuoteID(id string) string {
	if len(id) <= maxQuotedID {
		return strconv.Quote(id)
	}
	cut := maxQuotedID
	for cut > 0 && !utf8.RuneStart(id[cut]) {
		cut--
	}
	return strconv.Quote(id[:cut]) + "..."
}

// IsNonFinite reports whether the float32 with these bits is NaN or ±Inf:
// all exponent bits set.
func IsNonFinite(bits uint32) bool { return bits&0x7f800000 == 0x7f800000 }

// NonFiniteName names a non-finite feature value in an error message:
// "NaN", "-Inf" or "+Inf".
func NonFiniteName(f float32) string { return nonFiniteName(math.Float32bits(f)) }

func nonFiniteName(bits uint32) string {
	switch {
	case bits&0x007fffff != 0:
		return "NaN"
	case bits&0x80000000 != 0:
		return "-Inf"
	default:
		return "+Inf"
	}
}

// FirstNonFinite returns the index of the first NaN or ±Inf in f, or -1.
// It checks two values per 64-bit word, which makes it several times faster
// than a test per value on large feature matrices.
func FirstNonFinite(f []float32) int {
	if nativeLittleEndian && !AnyNonFinite(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))) {
		return -1
	}
	for k, x := range f {
		if IsNonFinite(math.Float32bits(x)) {
			return k
		}
	}
	return -1
}

// Source is a graph given node by node and edge by edge: a generated
// message, or the Go values of the public gcn package. FromSource may call
// its methods from several goroutines at once.
type Source interface {
	NumNodes() int
	// Node returns node i's id and features; FromSource does not keep
	// features.
	Node(i int) (id string, features []float32)
	NumEdges() int
	Edge(j int) (source, target string)
}

// FromSource builds a validated Graph from src for a model with featureDim
// features per node, with exactly graphwire.Decode's checks, order and
// messages. IDs share src's strings; Features and EdgeIndex are new. Big
// graphs are read and resolved in parts on several goroutines (Parts), as
// graphwire.Decode does.
func FromSource(src Source, featureDim int, lim Limits) (*Graph, error) {
	return FromSourceIn(src, featureDim, lim, nil)
}

// Buffers is memory FromSourceIn reuses from one graph to the next: the
// Graph's IDs, Features and EdgeIndex and the id index. A Graph built in
// Buffers lives in them until their next use or Release. The zero value
// is ready; a Buffers is for one goroutine at a time.
type Buffers struct {
	ids       []string
	features  []float32
	edgeIndex []int64
	slots     []idSlot
}

// Bytes is the memory b holds.
func (b *Buffers) Bytes() int64 {
	return int64(cap(b.ids))*int64(unsafe.Sizeof("")) + int64(cap(b.features))*4 +
		int64(cap(b.edgeIndex))*8 + int64(cap(b.slots))*int64(unsafe.Sizeof(idSlot{}))
}

// Release drops b's references to the ids of the last graph (the
// Source's strings), so that keeping b does not keep them; the memory
// stays for the next graph.
func (b *Buffers) Release() { clear(b.ids) }

// reuse returns (*buf)[:n], reallocating *buf when its capacity is short.
// It never returns nil (an empty graph's slices are empty, not nil, as
// FromSource always gave them: JSON encodes nil as null).
func reuse[T any](buf *[]T, n int) []T {
	if cap(*buf) < n || *buf == nil {
		*buf = make([]T, n)
	}
	return (*buf)[:n]
}

// FromSourceIn is FromSource building the Graph in buf (nil: new memory).
// Every element of the Graph's slices is written before FromSourceIn
// returns it, so what buf held before does not matter.
func FromSourceIn(src Source, featureDim int, lim Limits, buf *Buffers) (*Graph, error) {
	if err := CheckFeatureDim(featureDim); err != nil {
		return nil, err
	}
	nodes, edges := src.NumNodes(), src.NumEdges()
	if err := CheckLimits(nodes, edges, lim); err != nil {
		return nil, err
	}
	if buf == nil {
		buf = new(Buffers)
	}
	g := &Graph{IDs: reuse(&buf.ids, nodes), EdgeIndex: reuse(&buf.edgeIndex, 2*edges)}
	// Allocate the feature matrix only when every node has the right number
	// of features: a request of many featureless nodes would otherwise cost
	// nodes*featureDim floats just to report its first error.
	rightSize := true
	for i := range nodes {
		if _, features := src.Node(i); len(features) != featureDim {
			rightSize = false
			break
		}
	}
	if rightSize {
		g.Features = reuse(&buf.features, nodes*featureDim)
	}
	v := Validator{featureDim: featureDim, index: newIDIndexIn(g.IDs, &buf.slots)}
	var starts [MaxParts]int
	err := IndexNodes(&v, EvenParts(starts[:], nodes), func(_, from, to int) *NodeFault {
		for i := from; i < to; i++ {
			id, features := src.Node(i)
			if id != "" && !utf8.ValidString(id) {
				return &NodeFault{I: i, Err: invalidf("node %d: id is not valid UTF-8", i)}
			}
			bad, badBits := FirstNonFinite(features[:min(len(features), featureDim)]), uint32(0)
			if bad >= 0 {
				badBits = math.Float32bits(features[bad])
			}
			if !v.Accepts(id, len(features), bad) {
				return &NodeFault{I: i, ID: id, Count: len(features), Bad: bad, BadBits: badBits}
			}
			g.IDs[i] = id
			if rightSize {
				copy(g.Features[i*featureDim:(i+1)*featureDim], features)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = ResolveEdges(&v, g.EdgeIndex, EvenParts(starts[:], edges), func(_ int, c *EdgeChunk) error {
		for e := range c.N {
			c.Ends[2*e], c.Ends[2*e+1] = src.Edge(c.Start + e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// AnyNonFinite reports whether any of the little-endian float32 values in v
// is NaN or ±Inf. It checks two values per 64-bit word without branching:
// adding 1 to a value's 8-bit exponent carries into the sign bit's place
// only when the exponent is all ones, and the two 32-bit lanes cannot carry
// into each other.
func AnyNonFinite(v []byte) bool {
	const (
		exp = 0x7f800000_7f800000
		one = 0x00800000_00800000
	)
	var acc uint64
	for len(v) >= 32 {
		acc |= (binary.LittleEndian.Uint64(v)&exp + one) |
			(binary.LittleEndian.Uint64(v[8:])&exp + one) |
			(binary.LittleEndian.Uint64(v[16:])&exp + one) |
			(binary.LittleEndian.Uint64(v[24:])&exp + one)
		v = v[32:]
	}
	for len(v) >= 4 {
		acc |= uint64(binary.LittleEndian.Uint32(v)&0x7f800000 + 0x00800000)
		v = v[4:]
	}
	return acc&0x80000000_80000000 != 0
}

// nativeLittleEndian is true where a float32 in memory has its wire bytes.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
