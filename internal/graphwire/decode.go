package graphwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/graphcheck"
)

// Field numbers from gcn.proto.
const (
	fieldGraphNodes              = 1
	fieldGraphEdges              = 2
	fieldGraphIncludePredictions = 3
	fieldGraphModelName          = 4
	fieldGraphModelVersion       = 5
	fieldNodeID                  = 1
	fieldNodeFeatures            = 2
	fieldEdgeSource              = 1
	fieldEdgeTarget              = 2
)

// Decode parses the wire bytes of a GraphData message into a validated
// Graph for a model with featureDim features per node.
//
// It accepts every encoding proto.Unmarshal accepts into gcnpb.GraphData
// (fields in any order, packed or unpacked features, unknown fields and
// groups, repeated scalars last-one-wins) and rejects the rest with an
// *gcnerr.Error of kind InvalidArgument. A valid request over lim returns one of kind TooLarge, found before
// anything proportional to the request is allocated. Decode and FromMessage
// return the same error for the same request.
//
// The returned IDs alias b: b must stay unchanged, and alive, for as long as
// the Graph (or any of its ids) is in use.
//
// Decode allocates its outputs (Features, EdgeIndex, IDs), an id index
// (graphcheck's) while decoding, and a constant number of small objects:
// nothing per node or per edge. A big request (graphcheck.Parts) is parsed
// and resolved in parts on up to GOMAXPROCS goroutines, joined before
// Decode returns; the Graph and the error do not depend on the split.
func Decode(b []byte, featureDim int, lim Limits) (*Graph, error) {
	return DecodeRouted(b, Fixed(featureDim), lim)
}

// DecodeRouted is Decode for a server of several models: after the
// top-level pass it calls resolve with the request's model_name and
// model_version, and decodes for the feature dimension resolve returns.
// resolve's error is returned as is.
func DecodeRouted(b []byte, resolve Resolver, lim Limits) (*Graph, error) {
	return decode(b, resolve, lim, graphcheck.Parts, nil)
}

// DecodePooled is DecodeRouted taking the Graph's Features and EdgeIndex
// from a bufpool.Pool (mapped memory, outside the Go heap) instead of
// allocating them. pool is called once, after resolve, and may return nil
// (allocate). The caller owns what was taken and must give it back with
// Recycle once nothing reads it; on an error, DecodePooled gives it back.
func DecodePooled(b []byte, resolve Resolver, lim Limits, pool func() *bufpool.Pool) (*Graph, error) {
	return decode(b, resolve, lim, graphcheck.Parts, pool)
}

// Recycle gives g's Features and EdgeIndex back to pool (nil: does
// nothing) and clears them in g. Nothing may use them afterwards: the model
// must be done with them (see serving.Request.Recycle).
func Recycle(g *Graph, pool *bufpool.Pool) {
	if pool == nil || g == nil {
		return
	}
	bufpool.Free(pool, g.Features)
	bufpool.Free(pool, g.EdgeIndex)
	g.Features, g.EdgeIndex = nil, nil
}

// decode is DecodePooled splitting n nodes or edges into partsFor(n) parts
// (tests split small graphs).
func decode(b []byte, resolve Resolver, lim Limits, partsFor func(n int) int, poolFor func() *bufpool.Pool) (_ *Graph, err error) {
	// Pass 1: walk the top-level fields only, to count nodes and edges and
	// find the byte ranges that hold them. Skipping a node or an edge costs
	// a tag and a length, so this is cheap next to pass 2.
	var (
		nodes, edges       int
		nodesFrom, nodesTo int
		edgesFrom, edgesTo int
		includePredictions bool
		minNodeBytes       = math.MaxInt
		modelName, version []byte
		nodeMarks          marks // where to split the nodes into parts
		edgeMarks          marks
	)
	for off := 0; off < len(b); {
		f, werr := nextField(b, off)
		if werr != nil {
			return nil, malformed("", 0, 0, werr)
		}
		switch {
		case f.num == fieldGraphNodes && f.typ == protowire.BytesType:
			if nodes == 0 {
				nodesFrom = off
			}
			nodeMarks.add(nodes, off)
			nodes++
			nodesTo = f.end
			minNodeBytes = min(minNodeBytes, f.end-f.val)
		case f.num == fieldGraphEdges && f.typ == protowire.BytesType:
			if edges == 0 {
				edgesFrom = off
			}
			edgeMarks.add(edges, off)
			edges++
			edgesTo = f.end
		case f.num == fieldGraphIncludePredictions && f.typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(b[f.val:])
			includePredictions = v != 0
		case f.num == fieldGraphModelName && f.typ == protowire.BytesType:
			// proto.Unmarshal checks every occurrence, not only the last,
			// which is the one that counts.
			if modelName = b[f.val:f.end]; !validUTF8(modelName) {
				return nil, invalidf("malformed GraphData: model_name is not valid UTF-8")
			}
		case f.num == fieldGraphModelVersion && f.typ == protowire.BytesType:
			if version = b[f.val:f.end]; !validUTF8(version) {
				return nil, invalidf("malformed GraphData: model_version is not valid UTF-8")
			}
		}
		off = f.end
	}
	// Copies: the names outlive the request buffer in logs and results.
	g := &Graph{ModelName: string(modelName), ModelVersion: string(version), IncludePredictions: includePredictions}
	featureDim, err := resolve(g.ModelName, g.ModelVersion)
	if err != nil {
		return nil, err
	}
	if err := checkFeatureDim(featureDim); err != nil {
		return nil, err
	}
	// Every feature takes at least 4 bytes of its node.
	nodeTooShortForModel := nodes > 0 && minNodeBytes/4 < featureDim
	if err := checkLimits(nodes, edges, lim); err != nil {
		// proto.Unmarshal would reject a malformed node or edge however
		// many there are, so a malformed request is invalid before it is
		// too big. Checking that allocates nothing.
		if err := checkStructure(b, nodesFrom, nodesTo, edgesFrom, edgesTo); err != nil {
			return nil, err
		}
		return nil, err
	}

	g.IDs = make([]string, nodes)
	var pool *bufpool.Pool
	if poolFor != nil {
		pool = poolFor()
	}
	// With a pool, every feature and endpoint is written before the Graph
	// is returned: a pooled slice's old values never show.
	g.EdgeIndex = bufpool.Make[int64](pool, 2*edges)
	if pool != nil {
		defer func() {
			if err != nil {
				Recycle(g, pool)
			}
		}()
	}
	// A node too short to hold featureDim features makes the request
	// invalid, and a few bytes per node must not make us allocate
	// nodes*featureDim floats just to say so: decode every row into one
	// scratch row instead, which still finds the first error in order.
	var scratch []float32
	if nodeTooShortForModel {
		scratch = make([]float32, featureDim)
	} else {
		g.Features = bufpool.Make[float32](pool, nodes*featureDim)
	}
	// One allocation for what the parts share.
	st := &struct {
		v            validator
		starts, offs [maxParts]int
	}{v: newValidator(featureDim, g.IDs)}
	v, offs := &st.v, &st.offs

	// Pass 2: nodes, so that every id is indexed before any edge, wherever
	// the edges are in the request. Big requests parse in parts, one
	// goroutine each, every part writing its own rows.
	parts := 1
	if scratch == nil {
		parts = partsFor(nodes)
	}
	nodeStarts := nodeMarks.split(st.starts[:], offs[:], nodes, parts)
	err = indexNodes(v, nodeStarts, func(part, from, to int) *nodeFault {
		off := offs[part]
		for i := from; i < to; {
			f, _ := nextField(b, off) // pass 1 checked the top level
			off = f.end
			if f.num != fieldGraphNodes || f.typ != protowire.BytesType {
				continue
			}
			row := scratch
			if row == nil {
				row = g.Features[i*featureDim : (i+1)*featureDim]
			}
			n, err := parseNode(b[f.val:f.end], f.val, i, row)
			if err != nil {
				return &nodeFault{I: i, Err: err}
			}
			id := unsafe.String(unsafe.SliceData(n.id), len(n.id))
			if !v.Accepts(id, n.count, n.bad) {
				return &nodeFault{I: i, ID: id, Count: n.count, Bad: n.bad, BadBits: n.badBits}
			}
			g.IDs[i] = id
			i++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if scratch != nil {
		return nil, fmt.Errorf("graphwire: internal error: a node too short for %d features passed validation", featureDim)
	}

	// Pass 3: edges, in parts as the nodes.
	edgeStarts := edgeMarks.split(st.starts[:], offs[:], edges, partsFor(edges))
	err = resolveEdges(v, g.EdgeIndex, edgeStarts, func(part int, c *edgeChunk) error {
		off := offs[part]
		defer func() { offs[part] = off }()
		for e := 0; e < c.N; {
			if source, target, end, ok := canonicalEdge(b, off); ok {
				c.Ends[2*e] = unsafe.String(unsafe.SliceData(source), len(source))
				c.Ends[2*e+1] = unsafe.String(unsafe.SliceData(target), len(target))
				off = end
				e++
				continue
			}
			f, _ := nextField(b, off) // pass 1 checked the top level
			off = f.end
			if f.num != fieldGraphEdges || f.typ != protowire.BytesType {
				continue
			}
			source, target, err := parseEdge(b[f.val:f.end], f.val, c.Start+e)
			if err != nil {
				c.N = e
				return err
			}
			c.Ends[2*e] = unsafe.String(unsafe.SliceData(source), len(source))
			c.Ends[2*e+1] = unsafe.String(unsafe.SliceData(target), len(target))
			e++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// marks records where some of the nodes (or edges) of a request start, so
// that a pass over them can be split into parts: pass 1 records every
// stride-th one, doubling stride (and dropping every other mark) whenever
// the fixed array is full, so it costs no allocation however big the
// request.
type marks struct {
	stride int // 0 until the first mark: then 1, 2, 4, ...
	n      int // marks held
	at     [64]int
}

// add records that item k (counted from 0, every k in turn) starts at byte
// off.
func (m *marks) add(k, off int) {
	if m.stride == 0 {
		m.stride = 1
	}
	if k%m.stride != 0 {
		return
	}
	if m.n == len(m.at) {
		for j := range len(m.at) / 2 {
			m.at[j] = m.at[2*j]
		}
		m.n, m.stride = len(m.at)/2, 2*m.stride
		if k%m.stride != 0 {
			return
		}
	}
	m.at[m.n] = off
	m.n++
}

// split divides the items into up to parts parts at marks near equal
// shares and stores each part's first item and byte offset in starts and
// offs; it returns starts[:parts used].
func (m *marks) split(starts, offs []int, items, parts int) []int {
	starts[0], offs[0] = 0, m.at[0]
	used := 1
	for p := 1; p < parts && m.n > 0; p++ {
		j := min((p*items/parts+m.stride/2)/m.stride, m.n-1)
		if k := j * m.stride; k > starts[used-1] {
			starts[used], offs[used] = k, m.at[j]
			used++
		}
	}
	return starts[:used]
}

// canonicalEdge reads the edge at b[off:] if it is encoded the way every
// protobuf encoder writes a small edge: the field's tag and a one-byte
// length, then the source id's tag and one-byte length and bytes, then the
// target id's, all ASCII. That is nearly every edge of nearly every request,
// and reading it takes a few byte comparisons where parseEdge's general
// loop takes three nextField calls and two UTF-8 checks. It returns the
// ids, where the edge ends and true; false means "use the general path",
// never "malformed".
func canonicalEdge(b []byte, off int) (source, target []byte, end int, ok bool) {
	const (
		edgeTag   = fieldGraphEdges<<3 | byte(protowire.BytesType)
		sourceTag = fieldEdgeSource<<3 | byte(protowire.BytesType)
		targetTag = fieldEdgeTarget<<3 | byte(protowire.BytesType)
	)
	if len(b)-off < 6 || b[off] != edgeTag || b[off+1] >= 0x80 {
		return nil, nil, 0, false
	}
	end = off + 2 + int(b[off+1])
	if end > len(b) {
		return nil, nil, 0, false
	}
	m := b[off+2 : end]
	if len(m) < 4 || m[0] != sourceTag || m[1] >= 0x80 {
		return nil, nil, 0, false
	}
	t := 2 + int(m[1]) // the target's tag
	if t+2 > len(m) || m[t] != targetTag || int(m[t+1]) != len(m)-t-2 || !isASCII(m) {
		return nil, nil, 0, false
	}
	return m[2:t], m[t+2:], end, true
}

// isASCII reports whether every byte of b is below 0x80, eight at a time.
func isASCII(b []byte) bool {
	var acc uint64
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc&0x8080808080808080 == 0
}

// checkStructure parses every node and edge in the given ranges for wire
// errors only, writing nothing.
func checkStructure(b []byte, nodesFrom, nodesTo, edgesFrom, edgesTo int) error {
	i := 0
	for off := nodesFrom; off < nodesTo; {
		f, _ := nextField(b, off)
		if f.num == fieldGraphNodes && f.typ == protowire.BytesType {
			if _, err := parseNode(b[f.val:f.end], f.val, i, nil); err != nil {
				return err
			}
			i++
		}
		off = f.end
	}
	j := 0
	for off := edgesFrom; off < edgesTo; {
		f, _ := nextField(b, off)
		if f.num == fieldGraphEdges && f.typ == protowire.BytesType {
			if _, _, err := parseEdge(b[f.val:f.end], f.val, j); err != nil {
				return err
			}
			j++
		}
		off = f.end
	}
	return nil
}

// nodeFields is what one Node message holds.
type nodeFields struct {
	id    []byte // the last id field, as proto3 keeps
	count int    // features sent, over all packed chunks and single values
	// bad is the index of the first NaN or Inf among the first len(row)
	// features, or -1; badBits are its bits.
	bad     int
	badBits uint32
}

// parseNode parses Node message m, which starts at byte base of the request
// and is node i, copying its first len(row) features into row. Extra
// features are counted, never written.
func parseNode(m []byte, base, i int, row []float32) (nodeFields, error) {
	n := nodeFields{bad: -1}
	for off := 0; off < len(m); {
		f, werr := nextField(m, off)
		if werr != nil {
			return n, malformed("node", i, base, werr)
		}
		switch {
		case f.num == fieldNodeID && f.typ == protowire.BytesType:
			// Like the generated decoder, check every occurrence, even
			// one a later id replaces.
			if !validUTF8(m[f.val:f.end]) {
				return n, invalidf("node %d: id is not valid UTF-8", i)
			}
			n.id = m[f.val:f.end]
		case f.num == fieldNodeFeatures && f.typ == protowire.BytesType:
			if (f.end-f.val)%4 != 0 {
				return n, malformed("node", i, base, &wireError{at: off,
					what: fmt.Sprintf("packed features length %d is not a multiple of 4", f.end-f.val)})
			}
			n.addFeatures(m[f.val:f.end], row)
		case f.num == fieldNodeFeatures && f.typ == protowire.Fixed32Type:
			n.addFeatures(m[f.val:f.end], row)
		}
		off = f.end
	}
	return n, nil
}

// addFeatures appends the little-endian float32 values in v to the node's
// features, writing those that fit in row.
func (n *nodeFields) addFeatures(v []byte, row []float32) {
	k := n.count
	n.count += len(v) / 4
	if k >= len(row) || n.count == k {
		return
	}
	dst := row[k:min(n.count, len(row))]
	v = v[:4*len(dst)]
	if n.bad < 0 && anyNonFinite(v) {
		for j := 0; len(v[4*j:]) >= 4; j++ {
			if bits := binary.LittleEndian.Uint32(v[4*j:]); isNonFinite(bits) {
				n.bad, n.badBits = k+j, bits
				break
			}
		}
	}
	if nativeLittleEndian {
		// The wire format is the memory format: one copy does it, several
		// times faster than converting value by value (a Cora-sized
		// request has 4M features).
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), len(v)), v)
		return
	}
	for j := range dst {
		dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(v[4*j:]))
	}
}

// nativeLittleEndian is true where a float32 in memory has its wire bytes.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// parseEdge parses Edge message m, which starts at byte base of the request
// and is edge j, and returns its last source and target ids.
func parseEdge(m []byte, base, j int) (source, target []byte, err error) {
	for off := 0; off < len(m); {
		f, werr := nextField(m, off)
		if werr != nil {
			return nil, nil, malformed("edge", j, base, werr)
		}
		if f.typ == protowire.BytesType && (f.num == fieldEdgeSource || f.num == fieldEdgeTarget) {
			v := m[f.val:f.end]
			if f.num == fieldEdgeSource {
				if !validUTF8(v) {
					return nil, nil, invalidf("edge %d: source id is not valid UTF-8", j)
				}
				source = v
			} else {
				if !validUTF8(v) {
					return nil, nil, invalidf("edge %d: target id is not valid UTF-8", j)
				}
				target = v
			}
		}
		off = f.end
	}
	return source, target, nil
}

// field is one field of a message: number, wire type, and where its value
// lies in the message.
type field struct {
	num protowire.Number
	typ protowire.Type
	// val is the offset of the value: after the tag, and for a
	// length-delimited field after the length too, so that b[val:end] is
	// the payload.
	val int
	end int // offset just past the field
}

// wireError is a wire-format error at byte at of the message being parsed.
type wireError struct {
	at   int
	what string
}

// wireErr describes protowire error code at byte at. protowire's messages
// start with a "proto:" prefix whose separator varies on purpose (to stop
// programs from matching it); clients get the description without it.
func wireErr(at, code int) *wireError {
	err := protowire.ParseError(code)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &wireError{at: at, what: "unexpected EOF"}
	}
	what := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
	return &wireError{at: at, what: what}
}

// malformed reports a wire error. kind and i name the node or edge whose
// message (starting at byte base of the request) holds it; kind "" means the
// top level.
func malformed(kind string, i, base int, we *wireError) error {
	if kind == "" {
		return invalidf("malformed GraphData: %s at byte %d", we.what, base+we.at)
	}
	return invalidf("malformed GraphData: %s %d: %s at byte %d", kind, i, we.what, base+we.at)
}

// nextField parses the field that starts at b[off:], off < len(b), with the
// rules of proto.Unmarshal: a field number outside [1, 2^29-1], a reserved
// wire type, an end-group marker outside a group, a bad varint or a value
// running past the end of b is an error. Groups are skipped whole, nested
// groups included, with protowire's recursion limit (as proto.Unmarshal
// does for unknown groups).
func nextField(b []byte, off int) (field, *wireError) {
	var tag uint64
	n := 1
	if c := b[off]; c < 0x80 {
		tag = uint64(c)
	} else if tag, n = protowire.ConsumeVarint(b[off:]); n < 0 {
		return field{}, wireErr(off, n)
	}
	num := tag >> 3
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return field{}, &wireError{at: off, what: "invalid field number"}
	}
	f := field{num: protowire.Number(num), typ: protowire.Type(tag & 7), val: off + n}
	switch f.typ {
	case protowire.BytesType:
		var l uint64
		if f.val < len(b) && b[f.val] < 0x80 {
			l, n = uint64(b[f.val]), 1
		} else if l, n = protowire.ConsumeVarint(b[f.val:]); n < 0 {
			return field{}, wireErr(f.val, n)
		}
		f.val += n
		if l > uint64(len(b)-f.val) {
			return field{}, &wireError{at: off, what: fmt.Sprintf("field %d: length %d runs past the end of its message", num, l)}
		}
		f.end = f.val + int(l)
	case protowire.Fixed32Type:
		if len(b)-f.val < 4 {
			return field{}, &wireError{at: f.val, what: "unexpected EOF"}
		}
		f.end = f.val + 4
	case protowire.EndGroupType:
		return field{}, &wireError{at: off, what: fmt.Sprintf("end-group marker for field %d outside any group", num)}
	default:
		n := protowire.ConsumeFieldValue(f.num, f.typ, b[f.val:])
		if n < 0 {
			return field{}, wireErr(f.val, n)
		}
		f.end = f.val + n
	}
	return f, nil
}

// validUTF8 is utf8.Valid with an inline fast path for ASCII, which most ids
// are: on big graphs it runs twice per edge.
func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}
