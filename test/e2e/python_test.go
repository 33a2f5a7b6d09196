package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestPythonClient: a Python client generated from proto/gcn.proto by
// protoc and grpc_python_plugin (python_client.py), as a stranger would
// make one, gets PyTorch's karate scores from ProcessGraph (plain and
// gzip), is refused without the token, and uses every stored-graph call
// with results equal to ProcessGraph's, against the real binary with
// --auth-token-file.
func TestPythonClient(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import grpc, google.protobuf").Run(); err != nil {
		testenv.Missing(t, python+" with grpcio and protobuf (python3-grpcio, python3-protobuf)")
	}
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (protobuf-compiler, protobuf-compiler-grpc)")
		}
	}
	const token = "python-client-token"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := servertest.Run(t, servertest.Options{
		Env:     []string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)},
		Args:    []string{"--auth-token-file", tokens, "--drain-delay", "0"},
		Timeout: 30 * time.Second,
	})
	root := testenv.RepoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join(root, "test", "e2e", "python_client.py"),
		"--addr", p.Addr, "--token", token,
		"--fixture", filepath.Join(root, "model", "testdata", "karate", "karate.json"),
		"--proto", filepath.Join(root, "proto", "gcn.proto"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python_client.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
