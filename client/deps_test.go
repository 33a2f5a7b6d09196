package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoInferenceDependency: the client and gcnclient never pull in the
// inference library, so they build without cgo and ONNX Runtime.
func TestNoInferenceDependency(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".", "../cmd/client")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps with CGO_ENABLED=0: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/gcnserve/gcnserve/gcn" || strings.Contains(pkg, "onnxruntime") || pkg == "runtime/cgo" {
			t.Errorf("client or cmd/client depends on %s", pkg)
		}
	}
}
