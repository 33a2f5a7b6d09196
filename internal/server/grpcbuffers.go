package server

import (
	"google.golang.org/grpc/mem"

	"github.com/gcnserve/gcnserve/internal/bufpool"
)

// The gRPC side of package bufpool: bufpool imports only the standard
// library (the public gcn package uses it for its forward scratch), and its
// Pool has exactly mem.BufferPool's methods, so the adapter is the choice
// of gRPC's default pool for the small buffers.

// newRequestBuffers returns the pool that keeps big request messages, their
// HTTP/2 frames and their decoded tensors for reuse outside the Go heap:
// from one full HTTP/2 frame up, at most 256 MiB kept idle, each buffer
// released after 10 s unused (docs/ARCHITECTURE.md, "Per-request memory").
// Smaller buffers go to gRPC's default pool, on the heap.
func newRequestBuffers() *bufpool.Pool {
	return bufpool.New(bufpool.Options{MinBytes: bufpool.FrameBytes, Fallback: mem.DefaultBufferPool()})
}

// *bufpool.Pool serves gRPC as its BufferPool (grpc experimental.BufferPool)
// and as the codec's (grpcapi.CodecOptions.Pool).
var _ mem.BufferPool = (*bufpool.Pool)(nil)
