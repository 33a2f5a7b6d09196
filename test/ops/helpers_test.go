// Package ops tests the real binary as an operator runs it: memory under a
// flood, drain on SIGTERM, reload on SIGHUP, flag validation and bearer
// tokens. Each test starts gcnserve (built as 'make build' builds it,
// by internal/servertest) on a loopback port.
package ops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/golden"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// start runs gcnserve (as 'make build' makes it) from the repo root with env
// added to the test's environment, and waits up to 30s until health says
// SERVING.
func start(t *testing.T, env []string, args ...string) *servertest.Server {
	t.Helper()
	return servertest.Run(t, servertest.Options{Env: env, Args: args, Timeout: 30 * time.Second})
}

// rawCodec sends pre-serialized requests and keeps responses as bytes, so
// the test's client spends no CPU on protobuf for big graphs.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// processGraph calls ProcessGraph with request bytes.
func processGraph(ctx context.Context, conn *grpc.ClientConn, req []byte, opts ...grpc.CallOption) ([]byte, error) {
	var res []byte
	err := conn.Invoke(ctx, gcnpb.GCNService_ProcessGraph_FullMethodName, &req, &res,
		append([]grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}, opts...)...)
	return res, err
}

// karateRequest is the bundled example request, serialized.
func karateRequest(t *testing.T) []byte {
	t.Helper()
	fx := golden.Read(t, filepath.Join(testenv.RepoRoot(t), "model", "testdata", "karate", "karate.json"))
	b, err := proto.Marshal(fx.Request)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
