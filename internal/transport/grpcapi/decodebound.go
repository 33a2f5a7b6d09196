package grpcapi

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Per-element bounds of what decoding a GraphService request allocates, as
// protobuf-go lays messages out, plus what the server builds from each
// element before applying it (graphs.Node and graphs.Edge, an entry in a
// validation map). Each is an upper bound of live bytes: a repeated field's
// slice may hold its old and its grown backing array at once.
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
	// doubling slice).
	boundScalar = 16
)

// DecodedBound bounds the bytes proto.Unmarshal allocates for b decoded as
// md, and what the server derives from it element by element, without
// decoding it: every message, string and scalar is counted from the wire
// before one is allocated. A message of 30 million empty edges (60 MB on
// the wire, 2 bytes each) is known to need about 7.7 GB before any is
// decoded. Bytes that are not md's wire form are an error naming the
// field.
func DecodedBound(b []byte, md protoreflect.MessageDescriptor) (int64, error) {
	var n int64
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, fmt.Errorf("%s: bad field tag: %v", md.Name(), protowire.ParseError(l))
		}
		b = b[l:]
		fd := md.Fields().ByNumber(num)
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return 0, fmt.Errorf("%s field %d: %v", md.Name(), num, protowire.ParseError(l))
		}
		v := b[:l]
		b = b[l:]
		switch {
		case fd == nil:
			// Unknown: kept as raw bytes beside the message.
			n += boundScalar + int64(l)
		case typ == protowire.BytesType && fd.Kind() == protoreflect.MessageKind:
			inner, _ := protowire.ConsumeBytes(v)
			sub, err := DecodedBound(inner, fd.Message())
			if err != nil {
				return 0, fmt.Errorf("%s.%s: %w", md.Name(), fd.Name(), err)
			}
			n += boundMessage + sub
		case typ == protowire.BytesType && (fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind):
			n += boundString + int64(l)
		case typ == protowire.BytesType:
			// A packed repeated scalar: a float stays 4 bytes, a varint of
			// 1 byte may become 8.
			inner, _ := protowire.ConsumeBytes(v)
			switch fd.Kind() {
			case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
				n += 2 * int64(len(inner))
			default:
				n += 2 * 8 * int64(len(inner))
			}
		default:
			n += boundScalar
		}
	}
	return n, nil
}
