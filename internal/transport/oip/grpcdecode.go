package oip

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/gcnserve/gcnserve/gen/inferencepb"
)

// rawInferRequest decodes a ModelInferRequest from gRPC's codec in two
// steps: it counts what the wire bytes declare (countInferRequest), checks
// the limits and grows the request's reservation (check), and only then
// unmarshals. It is a legacy (APIv1) message: protobuf-go hands its
// Unmarshal method the bytes in gRPC's receive buffer, so a refused
// request never copies them.
type rawInferRequest struct {
	check func(wireBytes int64, c inferCounts) error
	msg   *pb.ModelInferRequest
	// err is check's or proto.Unmarshal's refusal. Unmarshal returns nil
	// and the handler returns err: gRPC would report a codec error as
	// INTERNAL.
	err error
}

func (*rawInferRequest) Reset() {}
func (*rawInferRequest) String() string {
	return "inference.ModelInferRequest (counted before decoding)"
}
func (*rawInferRequest) ProtoMessage() {}

// RefuseRecv keeps a refusal of the server's codec (a message over the
// method's limit, a bad compressed payload) for the handler, like check's.
func (r *rawInferRequest) RefuseRecv(err error) { r.err = err }

// InferenceRequest marks a message that may be as large as
// --max-request-bytes (a codec that limits other methods' messages to a
// few KB asks for it).
func (*rawInferRequest) InferenceRequest() {}

// Unmarshal counts, checks, then decodes b into r.msg; a refusal is
// kept in r.err.
func (r *rawInferRequest) Unmarshal(b []byte) error {
	c, err := countInferRequest(b)
	if err == nil {
		err = r.check(int64(len(b)), c)
	}
	if err == nil {
		r.msg = new(pb.ModelInferRequest)
		if uerr := proto.Unmarshal(b, r.msg); uerr != nil {
			err = invalidf("malformed ModelInferRequest: %v", uerr)
		}
	}
	r.err = err
	return nil
}

// inferCounts is what countInferRequest learns from a ModelInferRequest's
// wire bytes without decoding it.
type inferCounts struct {
	// decoded bounds the bytes proto.Unmarshal and decodeGRPCInputs
	// allocate for the message (the wire bytes themselves not included).
	decoded int64
	// nodes and edges are the largest counts any input declares: x's
	// shape[0]; edge_index's shape[1] and half its typed elements.
	nodes, edges int64
}

// Per-element costs of a decoded ModelInferRequest, as protobuf-go lays it
// out, each an upper bound of the live bytes (a repeated field may hold its
// old and its grown backing array at once: 2x).
const (
	messageCost = 320 // a generated struct (the largest here is ~150 bytes), its pointer in a slice that doubles
	mapEntry    = 128 // a Go map entry of a parameters map, beyond its key and value
	bytesCost   = 48  // a string or []byte header, slot and rounding, beyond its bytes
	entryCost   = 128 // one entry of a repeated bytes field: its header in a slice that doubles, rounding
)

// ModelInferRequest's field numbers (proto/inference/grpc_predict_v2.proto).
const (
	reqParameters = 4
	reqInputs     = 5
	reqOutputs    = 6
	reqRaw        = 7
	inName        = 1
	inShape       = 3
	inParameters  = 4
	inContents    = 5
	outParameters = 2
)

// countInferRequest walks a ModelInferRequest's wire bytes and bounds what
// decoding it allocates: every element of typed contents is counted before
// any is decoded (a 1-byte varint of int_contents becomes 4 bytes in the
// message and 8 more when widened to INT64). Bytes that are not a
// ModelInferRequest are an INVALID_ARGUMENT naming the field.
func countInferRequest(b []byte) (inferCounts, error) {
	var c inferCounts
	var inputs [][]byte
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case typ != protowire.BytesType:
			// A scalar at the top level is unknown here (no scalar fields):
			// protobuf-go keeps it as unknown bytes.
			c.decoded += bytesCost
		case num == reqParameters:
			c.decoded += parametersCost(v)
		case num == reqInputs:
			c.decoded += messageCost
			inputs = append(inputs, v)
		case num == reqOutputs:
			c.decoded += messageCost
			return walk(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num == outParameters && typ == protowire.BytesType {
					c.decoded += parametersCost(v)
				} else {
					c.decoded += bytesCost + int64(len(v))
				}
				return nil
			})
		case num == reqRaw:
			// Kept as bytes, then decoded into at most 2x (INT32 widened),
			// with room for rounding.
			c.decoded += entryCost + 4*int64(len(v))
		default:
			c.decoded += bytesCost + int64(len(v))
		}
		return nil
	})
	if err != nil {
		return c, invalidf("malformed ModelInferRequest: %v", err)
	}
	for i, in := range inputs {
		if err := countInput(&c, in); err != nil {
			return c, invalidf("malformed ModelInferRequest: inputs[%d]: %v", i, err)
		}
	}
	return c, nil
}

// countInput adds one InferInputTensor's cost and declared sizes to c.
func countInput(c *inferCounts, b []byte) error {
	var name []byte
	var shape []int64
	var typed int64 // elements of its typed contents
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == inName && typ == protowire.BytesType:
			name = v
			c.decoded += bytesCost + int64(len(v))
		case num == inShape && typ == protowire.VarintType:
			shape = append(shape, int64(x))
			c.decoded += 4 * 8 // one unpacked element: 8 bytes, the slice doubling
		case num == inShape && typ == protowire.BytesType:
			for len(v) > 0 {
				d, n := protowire.ConsumeVarint(v)
				if n < 0 {
					return fmt.Errorf("shape: %v", protowire.ParseError(n))
				}
				shape = append(shape, int64(d))
				c.decoded += 2 * 8
				v = v[n:]
			}
		case num == inParameters && typ == protowire.BytesType:
			c.decoded += parametersCost(v)
		case num == inContents && typ == protowire.BytesType:
			c.decoded += messageCost
			n, cost, err := countContents(v)
			if err != nil {
				return fmt.Errorf("contents: %v", err)
			}
			typed += n
			c.decoded += cost
		case typ == protowire.BytesType:
			c.decoded += bytesCost + int64(len(v))
		default:
			c.decoded += bytesCost
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch string(name) {
	case InputFeatures:
		if len(shape) > 0 {
			c.nodes = max(c.nodes, shape[0])
		}
	case InputEdgeIndex:
		if len(shape) > 1 {
			c.edges = max(c.edges, shape[1])
		}
		c.edges = max(c.edges, typed/2)
	}
	return nil
}

// countContents counts an InferTensorContents' elements and bounds the
// bytes they take decoded, widening included.
func countContents(b []byte) (elements, cost int64, err error) {
	err = walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		size := contentsElementSize(num)
		// int_contents (2) is widened to int64 by decodeContents: 4 + 8.
		widen := int64(0)
		if num == 2 {
			widen = 8
		}
		switch {
		case num == 8 && typ == protowire.BytesType: // bytes_contents: one entry
			elements++
			cost += entryCost + int64(len(v))
		case size == 0: // unknown field: kept as bytes
			cost += bytesCost + int64(len(v))
		case typ == protowire.BytesType: // packed
			n := packedCount(v, num)
			elements += n
			cost += n * (2*size + widen)
		default: // one unpacked element: a doubling slice holds up to 4x
			elements++
			cost += 4*size + widen
		}
		return nil
	})
	return elements, cost, err
}

// contentsElementSize is the Go size of one element of an
// InferTensorContents field: bool, int32, int64, uint32, uint64, float,
// double (fields 1 to 7); 0 for any other.
func contentsElementSize(num protowire.Number) int64 {
	switch num {
	case 1:
		return 1
	case 2, 4, 6:
		return 4
	case 3, 5, 7:
		return 8
	}
	return 0
}

// packedCount is the number of elements in a packed field's bytes: one per
// varint (each ends with a byte under 0x80), or one per 4 or 8 bytes for
// float (6) and double (7).
func packedCount(v []byte, num protowire.Number) int64 {
	switch num {
	case 6:
		return int64(len(v) / 4)
	case 7:
		return int64(len(v) / 8)
	}
	var n int64
	for _, x := range v {
		if x < 0x80 {
			n++
		}
	}
	return n
}

// parametersCost bounds one parameters map entry decoded: the entry, its
// key and its InferParameter message.
func parametersCost(v []byte) int64 {
	return mapEntry + messageCost + 2*bytesCost + int64(len(v))
}

// walk calls fn with each field of a message's wire bytes: its number,
// wire type, and its bytes (length-delimited) or value (varint, fixed).
// Groups are refused, as the protocol has none.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(b)
			x = uint64(x32)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("field %d: wire type %d is not used by the protocol", num, typ)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}
