// Package wirecount reads what a protobuf message's wire bytes declare
// without decoding them: how many elements each repeated field will hold
// and a bound of the bytes proto.Unmarshal allocates. A transport holds the
// request's bytes anyway; counting them costs no allocation per element,
// so a request past --max-nodes or --max-edges, or past the memory budget,
// is refused before protobuf builds 30 million strings for it.
//
// The counts are exact for every message proto.Unmarshal accepts: an
// element is counted exactly when protobuf-go would decode it into the
// field (a field sent with another wire type than its own is kept as
// unknown bytes instead, and counted as such; a singular message sent
// twice is merged, so its repeated fields add up).
//
// CountJSON counts the elements of a protojson body the same way, and
// CheckLimits refuses the stored-graph requests past --max-nodes and
// --max-edges by those counts, in one wording for gRPC and HTTP.
package wirecount

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Per-element bounds of what decoding a message allocates, as protobuf-go
// lays messages out, plus what the server builds from each element before
// applying it (graphs.Node and graphs.Edge, an entry in a validation map).
// Each is an upper bound of live bytes: a repeated field's slice may hold
// its old and its grown backing array at once.
const (
	// boundMessage: a generated struct (Node, Edge: about 80 bytes), its
	// pointer in a slice that doubles, its graphs.Node or graphs.Edge (32
	// to 48 bytes) and a map entry of the delta's validation.
	boundMessage = 256
	// boundString: a string's header in a slice or struct, its slot in a
	// doubling slice, allocation rounding, a map entry keyed by it; its
	// bytes are counted beside.
	boundString = 96
	// boundScalar: one element of a repeated scalar (at most 8 bytes, a
	// doubling slice), or the header of a field kept as unknown bytes.
	boundScalar = 16
)

// Counts is what Count learned from a message's wire bytes.
type Counts struct {
	// Decoded bounds the bytes proto.Unmarshal allocates for the message,
	// and what the server derives from it element by element (the wire
	// bytes themselves not included).
	Decoded int64
	// elements holds the element count of every repeated field that has
	// one, by path (Elements).
	elements map[string]int64
	// paths caches each field's path under its parent's, so that walking
	// 30 million nested elements builds no string per element.
	paths map[fieldAt]fieldPath
}

// fieldAt is a field under the path of the message that holds it.
type fieldAt struct {
	prefix string
	fd     protoreflect.FieldDescriptor
}

// fieldPath is a field's path ("graph.nodes") and the prefix of the fields
// of its message ("graph.nodes.").
type fieldPath struct{ path, prefix string }

// pathOf returns fd's path under prefix, built once per Count.
func (c *Counts) pathOf(prefix string, fd protoreflect.FieldDescriptor) fieldPath {
	k := fieldAt{prefix, fd}
	p, ok := c.paths[k]
	if !ok {
		p.path = prefix + string(fd.Name())
		p.prefix = p.path + "."
		c.paths[k] = p
	}
	return p
}

// Elements is how many elements the repeated field at path holds once
// decoded: a field name ("node_ids"), or names joined by dots through
// message fields ("graph.nodes"; "upsert_nodes.features" is the total of
// every node's features). 0 for a field the message does not carry.
func (c Counts) Elements(path string) int64 { return c.elements[path] }

// Count walks b as the wire form of md and counts it. Bytes that are not
// md's wire form (a bad tag, a truncated or overlong varint, a length past
// the end, a packed field cut inside an element) are an error naming the
// field; proto.Unmarshal refuses them too.
func Count(b []byte, md protoreflect.MessageDescriptor) (Counts, error) {
	// The message's own struct, beside what its fields hold.
	c := Counts{Decoded: boundMessage, elements: make(map[string]int64), paths: make(map[fieldAt]fieldPath)}
	err := c.walk(b, md, "")
	return c, err
}

func (c *Counts) walk(b []byte, md protoreflect.MessageDescriptor, prefix string) error {
	for len(b) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return fmt.Errorf("%s: bad field tag: %v", md.Name(), protowire.ParseError(tagLen))
		}
		l := protowire.ConsumeFieldValue(num, typ, b[tagLen:])
		if l < 0 {
			return fmt.Errorf("%s field %d: %v", md.Name(), num, protowire.ParseError(l))
		}
		v := b[tagLen : tagLen+l]
		b = b[tagLen+l:]
		fd := md.Fields().ByNumber(num)
		packed := fd != nil && fd.IsList() && typ == protowire.BytesType && isPackable(fd.Kind())
		if fd == nil || (!packed && typ != wireType(fd.Kind())) {
			// Unknown, or a known field in another wire type: protobuf-go
			// keeps the tag and value as unknown bytes.
			c.Decoded += boundScalar + int64(tagLen+l)
			continue
		}
		path := c.pathOf(prefix, fd)
		var n int64 = 1 // elements this occurrence adds
		switch {
		case fd.Kind() == protoreflect.MessageKind:
			inner, _ := protowire.ConsumeBytes(v)
			c.Decoded += boundMessage
			if err := c.walk(inner, fd.Message(), path.prefix); err != nil {
				return fmt.Errorf("%s.%s: %w", md.Name(), fd.Name(), err)
			}
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			c.Decoded += boundString + int64(l)
		case packed:
			inner, _ := protowire.ConsumeBytes(v)
			var err error
			if n, err = packedLen(inner, fd.Kind()); err != nil {
				return fmt.Errorf("%s.%s: packed: %v", md.Name(), fd.Name(), err)
			}
			c.Decoded += 2 * 8 * n
		default:
			c.Decoded += boundScalar
		}
		if fd.IsList() {
			c.elements[path.path] += n
		}
	}
	return nil
}

// wireType is the wire type protobuf-go decodes a field of kind k from
// (besides the packed form of a repeated scalar). Groups are not used in
// this project's protos: a group field's wire type never matches.
func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	}
	return -1
}

// isPackable: a repeated field of kind k may come packed (one
// length-delimited run of its elements).
func isPackable(k protoreflect.Kind) bool {
	switch wireType(k) {
	case protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type:
		return true
	}
	return false
}

// packedLen counts the elements of a packed run as protobuf-go decodes it:
// varints one by one (a truncated or overlong one is an error), fixed-size
// elements by size (a run cut inside one is an error).
func packedLen(b []byte, k protoreflect.Kind) (int64, error) {
	switch wireType(k) {
	case protowire.Fixed32Type:
		if len(b)%4 != 0 {
			return 0, fmt.Errorf("%d bytes is not a whole number of 4-byte elements", len(b))
		}
		return int64(len(b) / 4), nil
	case protowire.Fixed64Type:
		if len(b)%8 != 0 {
			return 0, fmt.Errorf("%d bytes is not a whole number of 8-byte elements", len(b))
		}
		return int64(len(b) / 8), nil
	}
	var n int64
	for len(b) > 0 {
		_, l := protowire.ConsumeVarint(b)
		if l < 0 {
			return 0, fmt.Errorf("element %d: %v", n, protowire.ParseError(l))
		}
		b = b[l:]
		n++
	}
	return n, nil
}
