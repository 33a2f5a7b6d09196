package metrics

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"google.golang.org/grpc/codes"
)

// BenchmarkGRPCStatsHandler is the stats handler's cost for one unary RPC:
// the events gRPC delivers, from TagRPC to End.
func BenchmarkGRPCStatsHandler(b *testing.B) {
	for _, tc := range []struct {
		name string
		err  error
	}{{"ok", nil}, {"failed", status.Error(codes.InvalidArgument, "bad")}} {
		b.Run(tc.name, func(b *testing.B) {
			h := New(Options{}).GRPCStatsHandler()
			peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
			info := &stats.RPCTagInfo{FullMethodName: "/GCNService/ProcessGraph"}
			b.ReportAllocs()
			for b.Loop() {
				ctx := h.TagRPC(context.Background(), info)
				h.HandleRPC(ctx, &stats.InHeader{RemoteAddr: peer})
				begin := time.Now()
				h.HandleRPC(ctx, &stats.Begin{BeginTime: begin})
				h.HandleRPC(ctx, &stats.InPayload{Length: 6000})
				h.HandleRPC(ctx, &stats.OutPayload{Length: 900})
				h.HandleRPC(ctx, &stats.End{BeginTime: begin, EndTime: time.Now(), Error: tc.err})
			}
		})
	}
}
