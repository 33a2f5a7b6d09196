package grpcapi

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec wrapped below
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// rawMessage carries a message's wire bytes through the codec untouched, so
// ProcessGraph decodes the request straight into tensors (graphwire) instead
// of into generated structs, and writes its response bytes itself.
type rawMessage struct {
	data []byte
	// buf owns data when it came from the codec's buffer pool; free
	// returns it. With a bufpool.Pool the bytes may be unmapped once
	// returned: nothing aliasing data (graphwire's node ids) may be used
	// after free, which the handlers call last.
	buf mem.Buffer
	// limit, set before the message is received, is the most bytes it may
	// hold once decompressed (0: the codec's MaxBytes).
	limit int
	// err is why a received message was refused (over its limit, bad
	// compression): the codec reports it here, because gRPC would turn an
	// Unmarshal error into INTERNAL.
	err error
}

// free releases the pooled request buffer. data, and every string aliasing
// it, must not be used afterwards.
func (m *rawMessage) free() {
	if m.buf != nil {
		m.buf.Free()
		m.buf, m.data = nil, nil
	}
}

// CodecOptions bound what the codec accepts.
type CodecOptions struct {
	// MaxBytes bounds every received message after decompression; the
	// server sets it to --max-request-bytes. 0: no bound beyond gRPC's
	// MaxRecvMsgSize.
	MaxBytes int
	// Limit, when set, returns a smaller bound for messages of msg's type
	// (0: MaxBytes). The server gives every request message but the
	// inference requests a few KB: a health check or model-info request
	// is a few bytes.
	Limit func(msg any) int
	// Pool, when set, holds the contiguous copy of every raw request
	// message (ProcessGraph's, the stored-graph requests'): the server
	// passes a bufpool.Pool, so a large request's bytes live outside the
	// Go heap and are reused by the next one. nil: gRPC's default pool.
	Pool mem.BufferPool
}

// Codec returns the server's "proto" codec (grpc.ForceServerCodecV2) with
// no limits of its own: the tutorial service's ProcessGraph needs it; every
// other service's messages pass through to gRPC's standard protobuf codec.
func Codec() (encoding.CodecV2, error) {
	c, err := newRawCodec(CodecOptions{})
	return c, err
}

// NewCodec returns the server's "proto" codec and the gzip decompressor
// that goes with it (grpc.RPCDecompressor). gRPC inflates a compressed
// message up to MaxRecvMsgSize, whatever the method, before the codec sees
// it: a 60 KB gzip bomb sent to Health/Check would hold 64 MiB. With this
// decompressor gRPC hands the codec the compressed bytes (behind a marker
// no client can forge), and the codec inflates them itself, no further than
// the limit of the message type it decodes into.
func NewCodec(opts CodecOptions) (encoding.CodecV2, Decompressor, error) {
	c, err := newRawCodec(opts)
	if err != nil {
		return nil, nil, err
	}
	return c, deferredGzip{marker: c.marker}, nil
}

// Decompressor is what grpc.RPCDecompressor takes (grpc.Decompressor's
// methods): the only server-side hook that runs before gRPC inflates a
// message. grpc-go deprecates the interface but supports it throughout 1.x.
type Decompressor interface {
	Do(r io.Reader) ([]byte, error)
	Type() string
}

// markerLen is the length of the prefix that marks compressed bytes handed
// to the codec.
const markerLen = 16

// rawCodec is the server's "proto" codec: *rawMessage passes through as
// bytes, every other message (health, reflection, GetModelInfo) goes to
// gRPC's standard protobuf codec. Clients see ordinary protobuf either way.
type rawCodec struct {
	proto  encoding.CodecV2
	opts   CodecOptions
	marker []byte // random per codec: a client cannot send it
}

func newRawCodec(opts CodecOptions) (rawCodec, error) {
	std := encoding.GetCodecV2("proto")
	if std == nil {
		return rawCodec{}, fmt.Errorf("grpc has no registered proto codec")
	}
	marker := make([]byte, markerLen)
	if _, err := rand.Read(marker); err != nil {
		return rawCodec{}, err
	}
	return rawCodec{proto: std, opts: opts, marker: marker}, nil
}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.data)}, nil
	}
	return c.proto.Marshal(v)
}

// limit is the most bytes a message decoded into v may hold.
func (c rawCodec) limit(v any) int {
	n := c.opts.MaxBytes
	if m, ok := v.(*rawMessage); ok {
		if m.limit > 0 {
			n = m.limit
		}
	} else if c.opts.Limit != nil {
		if l := c.opts.Limit(v); l > 0 {
			n = l
		}
	}
	return n
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	limit := c.limit(v)
	if c.compressed(data) {
		inflated, err := c.inflate(data, limit, v)
		if err != nil {
			return c.refuse(v, err)
		}
		defer inflated.Free()
		data = inflated
	} else if limit > 0 && data.Len() > limit {
		return c.refuse(v, status.Errorf(codes.ResourceExhausted,
			"%s of %d bytes is over this method's limit of %d bytes", messageName(v), data.Len(), limit))
	}
	if m, ok := v.(*rawMessage); ok {
		// One copy at most (none when the message arrived in one buffer),
		// into a pooled buffer: no 15 MB allocation per big request.
		pool := c.opts.Pool
		if pool == nil {
			pool = mem.DefaultBufferPool()
		}
		m.buf = data.MaterializeToBuffer(pool)
		m.data = m.buf.ReadOnlyData()
		return nil
	}
	if err := c.proto.Unmarshal(data, v); err != nil {
		// To a RecvRefuser the client's fault is INVALID_ARGUMENT; gRPC
		// itself would answer INTERNAL.
		return c.refuse(v, status.Errorf(codes.InvalidArgument, "malformed %s: %v", messageName(v), err))
	}
	return nil
}

// RecvRefuser is a request message that takes the codec's refusal (over
// its limit, malformed gzip) instead of an Unmarshal error, which gRPC
// would send as INTERNAL: its handler returns the refusal, a status with
// the right code (RESOURCE_EXHAUSTED, INVALID_ARGUMENT). ProcessGraph's raw
// message is one; the server wraps the health and OIP metadata requests.
type RecvRefuser interface {
	RefuseRecv(err error)
}

// RefuseRecv keeps the codec's refusal for the handler.
func (m *rawMessage) RefuseRecv(err error) { m.err = err }

// refuse reports err, a status: to a RecvRefuser, for its handler to
// return; otherwise as the Unmarshal error, which gRPC sends as INTERNAL
// "grpc: failed to unmarshal the received message: " + its message.
func (c rawCodec) refuse(v any, err error) error {
	if r, ok := v.(RecvRefuser); ok {
		r.RefuseRecv(err)
		return nil
	}
	return errors.New(status.Convert(err).Message())
}

// compressed reports whether data is a compressed message that
// deferredGzip passed through: gRPC hands its output over as one buffer
// starting with the marker.
func (c rawCodec) compressed(data mem.BufferSlice) bool {
	if len(data) == 0 {
		return false
	}
	b := data[0].ReadOnlyData()
	return len(b) >= markerLen && bytes.Equal(b[:markerLen], c.marker)
}

// inflate decompresses a marked gzip message, reading at most limit+1
// bytes from the decompressor, so a bomb costs limit bytes at most.
func (c rawCodec) inflate(data mem.BufferSlice, limit int, v any) (mem.BufferSlice, error) {
	r := data.Reader()
	defer r.Close()
	if _, err := r.Discard(markerLen); err != nil {
		return nil, status.Errorf(codes.Internal, "compressed message: %v", err)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed gzip %s: %v", messageName(v), err)
	}
	defer zr.Close()
	var src io.Reader = zr
	if limit > 0 {
		src = io.LimitReader(zr, int64(limit)+1)
	}
	out, err := mem.ReadAll(src, mem.DefaultBufferPool())
	if err != nil {
		out.Free()
		return nil, status.Errorf(codes.InvalidArgument, "malformed gzip %s: %v", messageName(v), err)
	}
	if limit > 0 && out.Len() > limit {
		out.Free()
		return nil, status.Errorf(codes.ResourceExhausted,
			"%s is over this method's limit of %d bytes after gzip decompression", messageName(v), limit)
	}
	return out, nil
}

// messageName names the message type v for an error.
func messageName(v any) string {
	if m, ok := v.(proto.Message); ok {
		return string(m.ProtoReflect().Descriptor().Name())
	}
	return "request message"
}

func (c rawCodec) Name() string { return "proto" }

// deferredGzip is the server's gzip decompressor (grpc.RPCDecompressor):
// it does not decompress, it hands the compressed bytes to the codec behind
// the codec's marker, so the codec inflates them only as far as the
// receiving method allows. Responses are still compressed by gRPC's
// registered gzip compressor.
type deferredGzip struct{ marker []byte }

func (d deferredGzip) Do(r io.Reader) ([]byte, error) {
	var b bytes.Buffer
	b.Write(d.marker)
	if _, err := b.ReadFrom(r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (deferredGzip) Type() string { return "gzip" }
