package server

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/gen/inferencepb"
	"github.com/gcnserve/gcnserve/internal/auth"
	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/transport/grpcapi"
)

// The gRPC listener's defences against hostile clients (docs/OPERATIONS.md,
// "Hostile clients"):
//
//   - authentication before a byte of the message is read (the tap handle);
//   - a receive limit of a few KB for every request message but the
//     inference requests, applied before a compressed message is inflated
//     (the codec and its gzip decompressor, grpcapi.NewCodec);
//   - a read deadline: a call whose request message has not arrived within
//     --request-read-timeout of its headers is cut off, so a stalled client
//     does not keep the memory its call reserved;
//   - at most --max-concurrent-streams calls per connection.

// grpcGuard builds the tap handle and stats handler of those defences.
type grpcGuard struct {
	tokens      *auth.Tokens  // nil: no authentication
	readTimeout time.Duration // 0: no read deadline
	// sendTimeout bounds how long a streaming response message may wait
	// for the client to take it (grpcapi.CallDeadline.ArmSend; 0: no
	// limit).
	sendTimeout time.Duration
	// pool holds big request messages off the Go heap (bufpool).
	pool *bufpool.Pool
}

// options returns the server options that install the guard.
func (g grpcGuard) options(cfg Config) ([]grpc.ServerOption, error) {
	codec, gunzip, err := grpcapi.NewCodec(grpcapi.CodecOptions{
		MaxBytes: cfg.MaxRequestBytes,
		Limit:    messageLimit,
		Pool:     g.pool,
	})
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec),
		// The HTTP/2 frames of messages (16 KiB each) are read into the
		// same off-heap pool: in gRPC's heap pools a large request's 16.5
		// MB of frames stay live to the collector (sync.Pool keeps them
		// over a cycle), and GOGC=100 lets the heap grow twice that.
		experimental.BufferPool(g.pool),
		// gRPC would inflate a compressed message up to MaxRecvMsgSize
		// whatever the method; this decompressor leaves it to the codec,
		// which stops at the method's limit. Server side only: clients in
		// the same process keep gRPC's gzip.
		//lint:ignore SA1019 the only server-side hook before decompression; supported throughout grpc-go 1.x
		grpc.RPCDecompressor(gunzip),
		grpc.InTapHandle(g.tap),
		grpc.StatsHandler(readDeadlineStats{}),
	}
	if cfg.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(cfg.MaxConcurrentStreams)))
	}
	return opts, nil
}

// messageLimit is the decompressed size limit of a request message of v's
// type: grpcapi.MaxSmallRequestBytes for all but the inference requests
// (ProcessGraph's raw message sets its own limit in grpcapi). Small is the
// default, so a new method is safe until told otherwise: a new RPC whose
// requests are big (a stored graph, a delta) must be listed here.
func messageLimit(v any) int {
	// The OIP ModelInfer handler decodes through its own counting type.
	if _, ok := v.(interface{ InferenceRequest() }); ok {
		return 0 // --max-request-bytes
	}
	switch v.(type) {
	case *inferencepb.ModelInferRequest,
		// Stored graphs: an initial graph, a chunk of one, a delta and a
		// list of node ids to score can each be as big as a request.
		*gcnpb.CreateGraphRequest, *gcnpb.LoadGraphChunk, *gcnpb.DeltaRequest, *gcnpb.ScoreRequest:
		return 0 // --max-request-bytes
	}
	return grpcapi.MaxSmallRequestBytes
}

// tap runs for each new call on the connection's reader goroutine, before
// the call's handler starts and before a byte of its message is read: it
// refuses a call without an accepted token (health and reflection are
// exempt) and arms the call's read deadline.
func (g grpcGuard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if g.tokens != nil {
		var err error
		if ctx, err = g.tokens.TapHandle()(ctx, info); err != nil {
			return ctx, err
		}
	}
	if g.readTimeout <= 0 && g.sendTimeout <= 0 {
		return ctx, nil
	}
	return withReadDeadline(ctx, g.readTimeout, g.sendTimeout), nil
}

// readDeadline cuts a call off when its request message has not arrived in
// time. It is carried in the call's context, which the transport's reader
// waits on: ending it ends the read with DEADLINE_EXCEEDED, the handler
// returns, and its memory reservation is released.
//
// It is also the call's grpcapi.CallDeadline: a streaming handler re-arms
// it for each further message it waits for (ArmRead) or sends (ArmSend).
type readDeadline struct {
	timer    *time.Timer
	timedOut atomic.Bool
	read     time.Duration // 0: no read deadline
	send     time.Duration // 0: no send deadline
}

// ArmRead implements grpcapi.CallDeadline.
func (d *readDeadline) ArmRead() { d.arm(d.read) }

// ArmSend implements grpcapi.CallDeadline.
func (d *readDeadline) ArmSend() { d.arm(d.send) }

// Disarm implements grpcapi.CallDeadline.
func (d *readDeadline) Disarm() { d.timer.Stop() }

func (d *readDeadline) arm(t time.Duration) {
	if t > 0 {
		d.timer.Reset(t)
	} else {
		d.timer.Stop()
	}
}

type readDeadlineKey struct{}

// readDeadlineCtx is a call's context with its read deadline: Err reports
// DeadlineExceeded once the deadline has cut the call off.
type readDeadlineCtx struct {
	context.Context
	d *readDeadline
}

func (c readDeadlineCtx) Err() error {
	if c.d.timedOut.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

func (c readDeadlineCtx) Value(key any) any {
	switch key {
	case readDeadlineKey{}, grpcapi.CallDeadlineKey{}:
		return c.d
	}
	return c.Context.Value(key)
}

// withReadDeadline returns ctx, ended after timeout unless the deadline is
// disarmed first (the first request message arrived, or the call ended);
// with timeout 0 it is armed only by a handler (sendTimeout).
func withReadDeadline(ctx context.Context, timeout, sendTimeout time.Duration) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	d := &readDeadline{read: timeout, send: sendTimeout}
	first := timeout
	if first <= 0 {
		first = time.Duration(math.MaxInt64) // armed by a handler only
	}
	d.timer = time.AfterFunc(first, func() {
		d.timedOut.Store(true)
		cancel()
	})
	// The transport ends the call's context when the stream closes, also
	// for calls no stats event reaches (an unknown method): the timer goes
	// with it instead of waiting out the timeout.
	context.AfterFunc(ctx, func() { d.timer.Stop() })
	return readDeadlineCtx{Context: ctx, d: d}
}

// disarm stops the read deadline of ctx's call, if it has one.
func disarmReadDeadline(ctx context.Context) {
	if d, ok := ctx.Value(readDeadlineKey{}).(*readDeadline); ok {
		d.timer.Stop()
	}
}

// readDeadlineStats disarms a call's read deadline when its first request
// message has been received in full (gRPC reports it before the handler
// sees the message), and when the call ends.
type readDeadlineStats struct{}

func (readDeadlineStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (readDeadlineStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.InPayload, *stats.End:
		disarmReadDeadline(ctx)
	}
}

func (readDeadlineStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (readDeadlineStats) HandleConn(context.Context, stats.ConnStats) {}

// refusableRequest is a request message that takes the codec's refusal
// (grpcapi.RecvRefuser), so its handler answers RESOURCE_EXHAUSTED for a
// message over its limit instead of gRPC's INTERNAL.
type refusableRequest struct {
	proto.Message
	err error
}

func (r *refusableRequest) RefuseRecv(err error) { r.err = err }

// registerHealth registers grpc.health.v1.Health as the generated code
// does, except that Check and Watch receive their request through
// refusableRequest.
func registerHealth(s *grpc.Server, h healthpb.HealthServer) {
	d := healthpb.Health_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		if d.Methods[i].MethodName == "Check" {
			d.Methods[i].Handler = healthCheckHandler
		}
	}
	d.Streams = slices.Clone(d.Streams)
	for i := range d.Streams {
		if d.Streams[i].StreamName == "Watch" {
			d.Streams[i].Handler = healthWatchHandler
		}
	}
	s.RegisterService(&d, h)
}

func healthCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := &refusableRequest{Message: new(healthpb.HealthCheckRequest)}
	if err := dec(in); err != nil {
		return nil, err
	}
	if in.err != nil {
		return nil, in.err
	}
	check := func(ctx context.Context, req any) (any, error) {
		return srv.(healthpb.HealthServer).Check(ctx, req.(*healthpb.HealthCheckRequest))
	}
	if interceptor == nil {
		return check(ctx, in.Message)
	}
	return interceptor(ctx, in.Message, &grpc.UnaryServerInfo{Server: srv, FullMethod: healthpb.Health_Check_FullMethodName}, check)
}

func healthWatchHandler(srv any, stream grpc.ServerStream) error {
	in := &refusableRequest{Message: new(healthpb.HealthCheckRequest)}
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	if in.err != nil {
		return in.err
	}
	return srv.(healthpb.HealthServer).Watch(in.Message.(*healthpb.HealthCheckRequest),
		&grpc.GenericServerStream[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse]{ServerStream: stream})
}
