package grpcapi_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/admission"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/infertest"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/grpcapi"
)

const maxRequestBytes = 1 << 20

// start serves GCNService over the real Karate model (serving with a 64 MiB
// admission budget) on an in-memory listener, built as the server builds
// it: the codec and its gzip decompressor, the receive limit.
func start(t *testing.T) gcnpb.GCNServiceClient {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	repo := infertest.KarateRepository(t, nil)
	svc := serving.New(serving.Config{Repository: repo, MaxRequestBytes: maxRequestBytes,
		Budget:   admission.New(admission.Options{Bytes: 64 << 20, MaxQueue: 4}),
		MaxNodes: 1000, MaxEdges: 10000, Logger: log})
	codec, gunzip, err := grpcapi.NewCodec(grpcapi.CodecOptions{MaxBytes: maxRequestBytes,
		Limit: func(any) int { return grpcapi.MaxSmallRequestBytes }})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(codec), grpc.MaxRecvMsgSize(maxRequestBytes),
		//lint:ignore SA1019 as the server does (internal/server/grpcguard.go)
		grpc.RPCDecompressor(gunzip))
	grpcapi.Register(gs, svc)
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return gcnpb.NewGCNServiceClient(conn)
}

func karate(t *testing.T) *gcnpb.GraphData {
	t.Helper()
	return golden.Read(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate", "karate.json")).Request
}

// TestService: each method answers, plain and gzip-compressed; refusals
// get their code from the one error table and a short message.
func TestService(t *testing.T) {
	client := start(t)
	// Generous: the gzip cases compress 32 MiB on the client, slow under
	// -race on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gz := grpc.UseCompressor(gzip.Name)

	for _, opts := range [][]grpc.CallOption{nil, {gz}} {
		res, err := client.ProcessGraph(ctx, karate(t), opts...)
		if err != nil || len(res.NodeScores) != 34 || res.ModelName != "gcn-karate" {
			t.Errorf("ProcessGraph (%d options): %v, %d scores from %q, want 34 from gcn-karate", len(opts), err, len(res.GetNodeScores()), res.GetModelName())
		}
		info, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{}, opts...)
		if err != nil || info.FeatureDim != 34 {
			t.Errorf("GetModelInfo (%d options): %v, feature dim %d, want 34", len(opts), err, info.GetFeatureDim())
		}
		list, err := client.ListModels(ctx, &gcnpb.ListModelsRequest{}, opts...)
		if err != nil || list.DefaultModel != "gcn-karate" {
			t.Errorf("ListModels (%d options): %v, default %q, want gcn-karate", len(opts), err, list.GetDefaultModel())
		}
	}

	long := strings.Repeat("x", 300)
	bigGraph := karate(t)
	bigGraph.Nodes[0].Id = strings.Repeat("n", maxRequestBytes)
	refusals := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown model", func() error {
			_, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: "nope"})
			return err
		}, codes.NotFound, `model "nope" not found`},
		{"300-byte model name", func() error {
			g := karate(t)
			g.ModelName = long
			_, err := client.ProcessGraph(ctx, g)
			return err
		}, codes.InvalidArgument, "is longer than 255 bytes"},
		{"bad version", func() error {
			_, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelVersion: "one"})
			return err
		}, codes.InvalidArgument, "not a positive integer"},
		{"GetModelInfo over its 4 KiB limit", func() error {
			_, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: strings.Repeat("x", 5000)})
			return err
		}, codes.ResourceExhausted, "limit of 4096 bytes"},
		{"GetModelInfo gzip bomb", func() error {
			_, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: strings.Repeat("x", 32<<20)}, gz)
			return err
		}, codes.ResourceExhausted, "after gzip decompression"},
		{"ProcessGraph over --max-request-bytes", func() error {
			_, err := client.ProcessGraph(ctx, bigGraph)
			return err
		}, codes.ResourceExhausted, "larger than max"},
		{"ProcessGraph gzip over --max-request-bytes", func() error {
			_, err := client.ProcessGraph(ctx, bigGraph, gz)
			return err
		}, codes.ResourceExhausted, "after gzip decompression"},
	}
	for _, r := range refusals {
		err := r.call()
		msg := status.Convert(err).Message()
		if status.Code(err) != r.code || !strings.Contains(msg, r.msg) || len(msg) > 1024 {
			t.Errorf("%s: %v %.200q (%d bytes), want %v containing %q, at most 1 KiB", r.name, status.Code(err), msg, len(msg), r.code, r.msg)
		}
	}
	// The server keeps serving.
	if _, err := client.ProcessGraph(ctx, karate(t)); err != nil {
		t.Errorf("ProcessGraph after the refusals: %v", err)
	}
}
