package metrics

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/internal/reqlog"
)

// A client whose deadline fires resets the stream, and the server sees that
// as a cancellation: the reset can reach the server before the server's own
// timer (set from grpc-timeout when the headers arrived) fires, by as long
// as the headers took to arrive and be processed (milliseconds on a loaded
// machine). The deadline is what ended such an RPC, so an RPC that ends
// Canceled within deadlineSlack of its deadline is counted
// DeadlineExceeded. The slack is at most half the RPC's timeout, so a client
// that cancels early is still counted Canceled.
const deadlineSlack = 50 * time.Millisecond

// endedByDeadline reports whether an RPC that began at begin, ended at end
// and had deadline (zero: none) ended because of that deadline.
func endedByDeadline(begin, end, deadline time.Time) bool {
	if deadline.IsZero() {
		return false
	}
	slack := min(deadlineSlack, deadline.Sub(begin)/2)
	return !end.Before(deadline.Add(-slack))
}

// healthWatch is the health service's streaming method.
const healthWatch = "grpc.health.v1.Health/Watch"

// endedByClient reports whether an RPC that ended with code did what it is
// for: a health Watch stream runs until its client leaves, so its
// cancellation is its normal end (every gcnclient run ends one), not a
// failure to log. It is still counted with its code.
func endedByClient(method string, code codes.Code) bool {
	return method == healthWatch && code == codes.Canceled
}

// GRPCStatsHandler returns the gRPC stats handler that counts, times and
// sizes every RPC. Install it with grpc.StatsHandler(m.GRPCStatsHandler())
// when building the server. It sees each RPC gRPC dispatches to a
// registered method, from before its message is read to after its status is
// written, so RPCs refused before the handler (oversize message, unsupported
// grpc-encoding, an interceptor's auth refusal) are counted with their
// code. RPCs to unknown methods are not: gRPC answers them without starting
// a stats RPC, and counting client-chosen names would let anyone grow the
// label set.
func (m *Metrics) GRPCStatsHandler() stats.Handler {
	if m == nil {
		return nopStatsHandler{}
	}
	return &grpcStats{m: m}
}

type grpcStats struct{ m *Metrics }

// rpcState is one RPC's measurements, carried in the tagged context. The
// payload counters are atomic because a streaming RPC's sends and receives
// may run on different goroutines.
type rpcState struct {
	method   string
	peer     string
	deadline time.Time // zero: none
	reqBytes atomic.Int64
	resBytes atomic.Int64
	began    atomic.Bool
}

type rpcStateKey struct{}

func (h *grpcStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	st := &rpcState{method: strings.TrimPrefix(info.FullMethodName, "/")}
	if d, ok := ctx.Deadline(); ok {
		st.deadline = d
	}
	return context.WithValue(ctx, rpcStateKey{}, st)
}

func (h *grpcStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	st, _ := ctx.Value(rpcStateKey{}).(*rpcState)
	if st == nil || s.IsClient() {
		return
	}
	switch s := s.(type) {
	case *stats.InHeader:
		if s.RemoteAddr != nil {
			st.peer = s.RemoteAddr.String()
		}
	case *stats.Begin:
		st.began.Store(true)
		h.m.inFlight.WithLabelValues(ProtocolGRPC).Inc()
	case *stats.InPayload:
		st.reqBytes.Add(int64(s.Length))
	case *stats.OutPayload:
		st.resBytes.Add(int64(s.Length))
	case *stats.End:
		if !st.began.Load() {
			return
		}
		h.m.inFlight.WithLabelValues(ProtocolGRPC).Dec()
		code, msg := codes.OK, ""
		if s.Error != nil {
			sts := status.Convert(s.Error)
			code, msg = sts.Code(), sts.Message()
		}
		if code == codes.Canceled && endedByDeadline(s.BeginTime, s.EndTime, st.deadline) {
			code = codes.DeadlineExceeded
		}
		h.m.finish(reqlog.Request{
			Protocol:      ProtocolGRPC,
			Method:        st.method,
			Code:          code.String(),
			OK:            code == codes.OK || endedByClient(st.method, code),
			Peer:          st.peer,
			RequestBytes:  st.reqBytes.Load(),
			ResponseBytes: st.resBytes.Load(),
			Duration:      s.EndTime.Sub(s.BeginTime),
			Message:       msg,
		})
	}
}

func (h *grpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h *grpcStats) HandleConn(context.Context, stats.ConnStats)                       {}

// nopStatsHandler is a nil *Metrics' stats handler.
type nopStatsHandler struct{}

func (nopStatsHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (nopStatsHandler) HandleRPC(context.Context, stats.RPCStats)                         {}
func (nopStatsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (nopStatsHandler) HandleConn(context.Context, stats.ConnStats)                       {}
