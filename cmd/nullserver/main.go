// Command nullserver answers GCNService.ProcessGraph without a model: it
// decodes each request with the generated protobuf code and returns a score
// of 0.5 for every node. It is the benchmark's ceiling: what the gRPC
// transport and protobuf decoding alone cost, with the same transport
// settings as gcnserve (message size limit, health, one listener).
//
//	nullserver [--addr 127.0.0.1:9998] [--max-request-bytes 67108864]
//
// It logs "serving" once it listens and reports SERVING on grpc.health.v1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9998", "listen address")
	maxRequest := flag.Int("max-request-bytes", 64<<20, "largest request message in bytes (gcnserve's default)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *maxRequest); err != nil {
		fmt.Fprintln(os.Stderr, "nullserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, maxRequest int) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxRequest))
	gcnpb.RegisterGCNServiceServer(srv, nullService{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	slog.Info("serving", "addr", lis.Addr().String())
	select {
	case err = <-served:
	case <-ctx.Done():
		hs.Shutdown()
		srv.GracefulStop()
		err = <-served
	}
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// nullService scores every node 0.5. The request has been fully decoded
// into gcnpb.GraphData by the time ProcessGraph runs, as in a server built
// on the generated code; building the result map is the only other work.
type nullService struct {
	gcnpb.UnimplementedGCNServiceServer
}

func (nullService) ProcessGraph(_ context.Context, g *gcnpb.GraphData) (*gcnpb.GCNResult, error) {
	scores := make(map[string]float32, len(g.GetNodes()))
	for _, n := range g.GetNodes() {
		scores[n.GetId()] = 0.5
	}
	return &gcnpb.GCNResult{NodeScores: scores}, nil
}
