package gcn_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTransportDependency: an embedding program gets ONNX Runtime and the
// standard library, not gRPC, protobuf or the server's transport code
// (go list -deps without -test: test files may use them).
func TestNoTransportDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
		"github.com/gcnserve/gcnserve/gen",
		"github.com/gcnserve/gcnserve/internal/graphwire",
		"github.com/gcnserve/gcnserve/internal/transport",
		// gcn uses internal/bufpool for its forward scratch: the pool
		// must not bring the server's packages in either.
		"github.com/gcnserve/gcnserve/internal/server",
		"github.com/gcnserve/gcnserve/internal/serving",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages, want the standard library's too:\n%s", len(deps), out)
	}
	for _, pkg := range deps {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				t.Errorf("gcn depends on %s", pkg)
			}
		}
	}
}

// TestGraphPackageIsPlain: the shared Graph type (package graph, aliased as
// gcn.Graph and client.Graph) builds without cgo and imports nothing.
func TestGraphPackageIsPlain(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "../graph")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ../graph with CGO_ENABLED=0: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "github.com/gcnserve/gcnserve/graph"; got != want {
		t.Errorf("go list -deps ../graph = %q, want only %q", got, want)
	}
}
