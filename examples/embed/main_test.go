package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// build compiles a package of this module into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// TestSameOutputAsGCNClient: the in-process library prints, byte for byte,
// what gcnclient prints for the same request against the real server.
func TestSameOutputAsGCNClient(t *testing.T) {
	root := testenv.RepoRoot(t)
	lib := testenv.ORTLibrary(t)
	dir := t.TempDir()

	embed := exec.Command(build(t, dir, "./examples/embed"))
	embed.Dir = root
	embed.Env = append(os.Environ(), "GCNSERVE_ORT_LIB="+lib)
	embedded, err := embed.Output()
	if err != nil {
		t.Fatalf("embed: %v", err)
	}

	srv := servertest.Start(t, "--model", "model/karate.onnx")
	gcnclient := exec.Command(build(t, dir, "./cmd/client"), "--addr", srv.Addr, "examples/karate.json")
	gcnclient.Dir = root
	remote, err := gcnclient.Output()
	if err != nil {
		t.Fatalf("gcnclient: %v", err)
	}

	if string(embedded) != string(remote) {
		t.Errorf("embed printed\n%s\ngcnclient printed\n%s", embedded, remote)
	}
	if lines := strings.Count(string(embedded), "\n"); lines != 35 || !strings.HasPrefix(string(embedded), "node  score   class\n0     ") {
		t.Errorf("embed printed %d lines:\n%s\nwant a header and 34 members", lines, embedded)
	}
}
