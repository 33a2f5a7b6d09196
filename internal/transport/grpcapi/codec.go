package grpcapi

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec wrapped below
	"google.golang.org/grpc/mem"
)

// rawMessage carries a message's wire bytes through the codec untouched, so
// ProcessGraph decodes the request straight into tensors (graphwire) instead
// of into generated structs, and writes its response bytes itself.
type rawMessage struct {
	data []byte
	// buf owns data when it came from gRPC's buffer pool; free returns it.
	buf mem.Buffer
}

// free releases the pooled request buffer. data, and every string aliasing
// it, must not be used afterwards.
func (m *rawMessage) free() {
	if m.buf != nil {
		m.buf.Free()
		m.buf, m.data = nil, nil
	}
}

// Codec returns the server's "proto" codec (grpc.ForceServerCodecV2): the
// tutorial service's ProcessGraph needs it; every other service's messages
// pass through to gRPC's standard protobuf codec.
func Codec() (encoding.CodecV2, error) { return newRawCodec() }

// rawCodec is the server's "proto" codec: *rawMessage passes through as
// bytes, every other message (health, reflection, GetModelInfo) goes to
// gRPC's standard protobuf codec. Clients see ordinary protobuf either way.
type rawCodec struct {
	proto encoding.CodecV2
}

func newRawCodec() (rawCodec, error) {
	std := encoding.GetCodecV2("proto")
	if std == nil {
		return rawCodec{}, fmt.Errorf("grpc has no registered proto codec")
	}
	return rawCodec{proto: std}, nil
}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.data)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*rawMessage); ok {
		// One copy at most (none when the message arrived in one buffer),
		// into a pooled buffer: no 15 MB allocation per big request.
		m.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		m.data = m.buf.ReadOnlyData()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (c rawCodec) Name() string { return "proto" }
