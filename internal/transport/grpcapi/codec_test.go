package grpcapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/bufpool"
)

// testCodec is the server's codec with a 64-byte limit for every generated
// message and 1 MiB for raw messages without their own limit.
func testCodec(t *testing.T) (rawCodec, deferredGzip) {
	t.Helper()
	c, dc, err := NewCodec(CodecOptions{MaxBytes: 1 << 20, Limit: func(any) int { return 64 }})
	if err != nil {
		t.Fatal(err)
	}
	return c.(rawCodec), dc.(deferredGzip)
}

// received is what gRPC hands the codec for msg: msg itself, or, when
// compressed, what the server's gzip decompressor makes of it.
func received(t *testing.T, dc deferredGzip, msg []byte, compressed bool) mem.BufferSlice {
	t.Helper()
	if !compressed {
		return mem.BufferSlice{mem.SliceBuffer(msg)}
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(msg)
	zw.Close()
	out, err := dc.Do(&z)
	if err != nil {
		t.Fatal(err)
	}
	return mem.BufferSlice{mem.SliceBuffer(out)}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCodecLimits: a generated message is decoded up to its type's limit,
// plain or gzip-compressed, and refused past it, naming the limit.
func TestCodecLimits(t *testing.T) {
	c, dc := testCodec(t)
	small := marshal(t, &healthpb.HealthCheckRequest{Service: "GCNService"})
	big := marshal(t, &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 100)})
	for _, compressed := range []bool{false, true} {
		got := new(healthpb.HealthCheckRequest)
		if err := c.Unmarshal(received(t, dc, small, compressed), got); err != nil || got.Service != "GCNService" {
			t.Errorf("compressed=%v: a %d-byte request: %v %q, want it decoded", compressed, len(small), err, got.Service)
		}
		err := c.Unmarshal(received(t, dc, big, compressed), new(healthpb.HealthCheckRequest))
		if err == nil || !strings.Contains(err.Error(), "limit of 64 bytes") {
			t.Errorf("compressed=%v: a %d-byte request: %v, want a refusal naming the 64-byte limit", compressed, len(big), err)
		}
	}
}

// TestCodecGzipBombNotInflated: a 16 MB message compressed to 16 KB is
// refused having inflated no more than its type's limit.
func TestCodecGzipBombNotInflated(t *testing.T) {
	c, dc := testCodec(t)
	bomb := marshal(t, &healthpb.HealthCheckRequest{Service: strings.Repeat("a", 16<<20)})
	data := received(t, dc, bomb, true)
	bomb = nil
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := c.Unmarshal(data, new(healthpb.HealthCheckRequest))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "after gzip decompression") {
		t.Errorf("16 MB gzip bomb: %v, want a refusal after decompression", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("refusing a 16 MB gzip bomb allocated %d bytes, want under 1 MiB (the limit is 64 bytes)", alloc)
	}
}

// TestCodecRawMessage: a raw message takes its own limit (else MaxBytes),
// and a refusal is left on the message with its code, for the handler to
// return (gRPC would make an Unmarshal error INTERNAL).
func TestCodecRawMessage(t *testing.T) {
	c, dc := testCodec(t)
	msg := bytes.Repeat([]byte{0x0a, 0x01, 'x'}, 1000) // 3,000 bytes
	for _, compressed := range []bool{false, true} {
		m := new(rawMessage) // no limit of its own: MaxBytes, 1 MiB
		if err := c.Unmarshal(received(t, dc, msg, compressed), m); err != nil || m.err != nil || !bytes.Equal(m.data, msg) {
			t.Errorf("compressed=%v: %v %v, %d bytes, want the %d bytes as sent", compressed, err, m.err, len(m.data), len(msg))
		}
		m.free()
		m = &rawMessage{limit: 1000}
		if err := c.Unmarshal(received(t, dc, msg, compressed), m); err != nil {
			t.Errorf("compressed=%v over its limit: Unmarshal %v, want nil (the refusal is on the message)", compressed, err)
		}
		if status.Code(m.err) != codes.ResourceExhausted || !strings.Contains(status.Convert(m.err).Message(), "limit of 1000 bytes") {
			t.Errorf("compressed=%v over its limit: %v, want RESOURCE_EXHAUSTED naming the 1000-byte limit", compressed, m.err)
		}
	}
	// Bytes that merely look like gzip, sent uncompressed, are not inflated.
	plain := []byte{0x1f, 0x8b, 0x08, 0x00}
	m := new(rawMessage)
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(plain)}, m); err != nil || !bytes.Equal(m.data, plain) {
		t.Errorf("uncompressed gzip magic: %v, %x, want the bytes as sent", err, m.data)
	}
	// Malformed gzip is the client's fault.
	bad := append(append([]byte{}, dc.marker...), 0x1f, 0x8b, 0xff)
	m = new(rawMessage)
	c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, m)
	if status.Code(m.err) != codes.InvalidArgument {
		t.Errorf("malformed gzip: %v, want INVALID_ARGUMENT", m.err)
	}
}

// TestCodecPassesThroughOtherMessages: responses and generated messages
// marshal as gRPC's protobuf codec does.
func TestCodecPassesThroughOtherMessages(t *testing.T) {
	c, _ := testCodec(t)
	in := &gcnpb.ModelInfoRequest{ModelName: "karate", ModelVersion: "1"}
	data, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := new(gcnpb.ModelInfoRequest)
	if err := c.Unmarshal(data, out); err != nil || !proto.Equal(in, out) {
		t.Errorf("round trip: %v %v, want %v", err, out, in)
	}
}

// TestReadBound: outside a gRPC call (no stream in the context), the bound
// is that of an uncompressed message.
func TestReadBound(t *testing.T) {
	if got := ReadBound(context.Background(), 1000); got != 2000 {
		t.Errorf("ReadBound = %d, want 2000", got)
	}
}

// refuser is a generated message that takes the codec's refusal, as the
// server's health and OIP metadata requests do.
type refuser struct {
	proto.Message
	err error
}

func (r *refuser) RefuseRecv(err error) { r.err = err }

// TestCodecRecvRefuser: a RecvRefuser gets the refusal with its code and
// Unmarshal succeeds; within the limit it is decoded as its message.
func TestCodecRecvRefuser(t *testing.T) {
	c, dc := testCodec(t)
	big := marshal(t, &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 100)})
	for _, compressed := range []bool{false, true} {
		r := &refuser{Message: new(healthpb.HealthCheckRequest)}
		if err := c.Unmarshal(received(t, dc, big, compressed), r); err != nil {
			t.Errorf("compressed=%v: Unmarshal %v, want nil (the refusal is on the message)", compressed, err)
		}
		if status.Code(r.err) != codes.ResourceExhausted {
			t.Errorf("compressed=%v: refusal %v, want RESOURCE_EXHAUSTED", compressed, r.err)
		}
	}
	r := &refuser{Message: new(healthpb.HealthCheckRequest)}
	small := marshal(t, &healthpb.HealthCheckRequest{Service: "GCNService"})
	if err := c.Unmarshal(received(t, dc, small, true), r); err != nil || r.err != nil || r.Message.(*healthpb.HealthCheckRequest).Service != "GCNService" {
		t.Errorf("within the limit: %v %v %v, want it decoded", err, r.err, r.Message)
	}
}

// TestCodecRawMessagePool: a raw message that arrives in several buffers is
// copied into a buffer of the codec's Pool (off the Go heap), which free
// gives back; compressed ones too.
func TestCodecRawMessagePool(t *testing.T) {
	pool := bufpool.New(bufpool.Options{MinBytes: 1 << 16})
	t.Cleanup(func() { pool.Close() })
	c, dc, err := NewCodec(CodecOptions{MaxBytes: 1 << 22, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte{0x0a, 0x01, 'x'}, 100_000) // 300,000 bytes
	for _, compressed := range []bool{false, true} {
		data := received(t, dc.(deferredGzip), msg, compressed)
		if !compressed {
			// As gRPC delivers it: one buffer per HTTP/2 frame.
			data = nil
			for b := msg; len(b) > 0; b = b[min(len(b), 16384):] {
				data = append(data, mem.SliceBuffer(b[:min(len(b), 16384)]))
			}
		}
		m := new(rawMessage)
		if err := c.Unmarshal(data, m); err != nil || m.err != nil || !bytes.Equal(m.data, msg) {
			t.Fatalf("compressed=%v: %v %v, %d bytes, want the %d bytes as sent", compressed, err, m.err, len(m.data), len(msg))
		}
		if s := pool.Stats(); s.InUse != 1<<19 {
			t.Errorf("compressed=%v: pool %+v, want the 512 KiB class in use", compressed, s)
		}
		m.free()
		if s := pool.Stats(); s.InUse != 0 || s.Idle != 1<<19 || s.Maps != 1 {
			t.Errorf("compressed=%v after free: pool %+v, want the buffer idle for reuse, one mapping in all", compressed, s)
		}
	}
}
