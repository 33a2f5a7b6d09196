package gcn

// A minimal reader of the ONNX file format (protobuf wire encoding) for the
// one thing the native path needs: the graph's float initializers. gcn must
// not import protobuf (it is the public library; transports own protobuf),
// and ModelProto -> GraphProto -> TensorProto is three nested messages, so a
// hand-written reader of those fields is smaller than a dependency.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Field numbers from onnx/onnx.proto (stable since IR version 3).
const (
	fieldModelGraph       = 7 // ModelProto.graph
	fieldGraphInitializer = 5 // GraphProto.initializer
	fieldTensorDims       = 1 // TensorProto.dims (repeated int64)
	fieldTensorDataType   = 2 // TensorProto.data_type
	fieldTensorFloatData  = 4 // TensorProto.float_data (repeated float)
	fieldTensorName       = 8 // TensorProto.name
	fieldTensorRawData    = 9 // TensorProto.raw_data (little-endian)
	fieldTensorLocation   = 14
	onnxFloat             = 1 // TensorProto.DataType FLOAT
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// initializer is one float tensor of the graph.
type initializer struct {
	dims []int64
	data []float32
}

var errWire = errors.New("malformed protobuf")

// readInitializers returns the float initializers of an ONNX model file by
// name; initializers of other types are skipped.
func readInitializers(model []byte) (map[string]initializer, error) {
	out := make(map[string]initializer)
	err := eachField(model, func(num int, typ int, v uint64, b []byte) error {
		if num != fieldModelGraph || typ != wireBytes {
			return nil
		}
		return eachField(b, func(num int, typ int, v uint64, b []byte) error {
			if num != fieldGraphInitializer || typ != wireBytes {
				return nil
			}
			name, t, err := readTensor(b)
			if err != nil {
				return fmt.Errorf("initializer %q: %w", name, err)
			}
			if t.data != nil {
				out[name] = t
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read ONNX initializers: %w", err)
	}
	return out, nil
}

// readTensor decodes a TensorProto. A tensor that is not FLOAT comes back
// with nil data and no error.
func readTensor(b []byte) (string, initializer, error) {
	var (
		name     string
		t        initializer
		dataType uint64
		raw      []byte
		hasRaw   bool
		floats   []float32
		external bool
	)
	err := eachField(b, func(num int, typ int, v uint64, b []byte) error {
		switch {
		case num == fieldTensorName && typ == wireBytes:
			name = string(b)
		case num == fieldTensorDataType && typ == wireVarint:
			dataType = v
		case num == fieldTensorDims && typ == wireVarint:
			t.dims = append(t.dims, int64(v))
		case num == fieldTensorDims && typ == wireBytes: // packed
			for len(b) > 0 {
				d, n := binary.Uvarint(b)
				if n <= 0 {
					return errWire
				}
				t.dims = append(t.dims, int64(d))
				b = b[n:]
			}
		case num == fieldTensorFloatData && typ == wireFixed32:
			floats = append(floats, math.Float32frombits(uint32(v)))
		case num == fieldTensorFloatData && typ == wireBytes: // packed
			if len(b)%4 != 0 {
				return errWire
			}
			for ; len(b) > 0; b = b[4:] {
				floats = append(floats, math.Float32frombits(binary.LittleEndian.Uint32(b)))
			}
		case num == fieldTensorRawData && typ == wireBytes:
			raw, hasRaw = b, true
		case num == fieldTensorLocation && typ == wireVarint:
			external = v == 1
		}
		return nil
	})
	if err != nil || dataType != onnxFloat {
		return name, initializer{}, err
	}
	if external {
		return name, initializer{}, fmt.Errorf("data stored outside the model file")
	}
	count := int64(1)
	for _, d := range t.dims {
		if d < 0 || d > math.MaxInt32 {
			return name, initializer{}, fmt.Errorf("dimension %d", d)
		}
		count *= d
		if count > math.MaxInt32 {
			return name, initializer{}, fmt.Errorf("dims %v too large", t.dims)
		}
	}
	if hasRaw {
		if int64(len(raw)) != 4*count {
			return name, initializer{}, fmt.Errorf("raw_data has %d bytes, dims %v want %d", len(raw), t.dims, 4*count)
		}
		floats = make([]float32, count)
		for i := range floats {
			floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	} else if int64(len(floats)) != count {
		return name, initializer{}, fmt.Errorf("float_data has %d values, dims %v want %d", len(floats), t.dims, count)
	}
	if floats == nil {
		floats = []float32{}
	}
	t.data = floats
	return name, t, nil
}

// eachField calls fn for every field of the message b: its number, wire
// type, and the varint or fixed value (v) or the length-delimited bytes (b).
func eachField(msg []byte, fn func(num, typ int, v uint64, b []byte) error) error {
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 || key>>3 == 0 || key>>3 > math.MaxInt32 {
			return errWire
		}
		msg = msg[n:]
		num, typ := int(key>>3), int(key&7)
		var (
			v uint64
			b []byte
		)
		switch typ {
		case wireVarint:
			v, n = binary.Uvarint(msg)
			if n <= 0 {
				return errWire
			}
			msg = msg[n:]
		case wireFixed64:
			if len(msg) < 8 {
				return errWire
			}
			v, msg = binary.LittleEndian.Uint64(msg), msg[8:]
		case wireFixed32:
			if len(msg) < 4 {
				return errWire
			}
			v, msg = uint64(binary.LittleEndian.Uint32(msg)), msg[4:]
		case wireBytes:
			l, n := binary.Uvarint(msg)
			if n <= 0 || l > uint64(len(msg)-n) {
				return errWire
			}
			b, msg = msg[n:n+int(l)], msg[n+int(l):]
		default:
			return errWire // groups (3, 4) are not used by ONNX
		}
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}
