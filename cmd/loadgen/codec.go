package main

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// rawCodec sends a pre-serialized request unchanged and keeps the response
// undecoded, so the load generator spends no CPU on protobuf per call and
// the benchmark measures the server, not the client.
//
// It is forced on ProcessGraph calls only (grpc.ForceCodecV2). Its name is
// "proto", so the request goes out as content-type application/grpc+proto,
// exactly what a generated client sends: the server cannot tell the
// difference, and the bytes on the wire are the same as the generated
// client's (proto.Marshal of the same message).
type rawCodec struct{}

// responseSize is a response that was received and counted, not decoded.
type responseSize int

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	// SliceBuffer's Free is a no-op: gRPC may release the slice after the
	// write, and the next call reuses the same bytes.
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch r := v.(type) {
	case *[]byte:
		*r = data.Materialize()
	case *responseSize:
		*r = responseSize(data.Len())
	default:
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }
