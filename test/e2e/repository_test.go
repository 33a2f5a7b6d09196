package e2e

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
	tutorial "github.com/gcnserve/gcnserve/test/e2e/tutorialpb"
)

// TestTutorialClientAgainstRepository: the unmodified tutorial client, which
// names no model, gets the default model of a two-model repository, and sees
// its answers change when a new version is renamed into the repository.
func TestTutorialClientAgainstRepository(t *testing.T) {
	root := testenv.RepoRoot(t)
	repo := t.TempDir()
	servertest.CopyFile(t, filepath.Join(root, "model", "karate.onnx"), filepath.Join(repo, "karate", "1", "model.onnx"))
	servertest.CopyFile(t, filepath.Join(root, "model", "cora.onnx"), filepath.Join(repo, "cora", "1", "model.onnx"))
	next := filepath.Join(root, "internal", "modelrepo", "testdata", "karate_seed1.onnx")
	servertest.CopyFile(t, next, filepath.Join(repo, ".staged", "model.onnx")) // hidden: ignored until renamed

	p := start(t, "--model-repository", repo, "--default-model", "karate", "--repository-poll-interval", "100ms")
	client := tutorial.NewGCNServiceClient(servertest.Dial(t, p.Addr))
	req, want := goldenKarate(t)
	scores := func() []float32 {
		t.Helper()
		res, err := client.ProcessGraph(testenv.Context(t), req)
		if err != nil {
			t.Fatalf("ProcessGraph: %v", err)
		}
		out := make([]float32, len(req.Nodes))
		for i, n := range req.Nodes {
			out[i] = res.NodeScores[n.Id]
		}
		return out
	}
	near := func(a, b []float32) bool {
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-5 {
				return false
			}
		}
		return true
	}
	if got := scores(); !near(got, want) {
		t.Fatalf("default model scores %v, want PyTorch's %v", got[:4], want[:4])
	}

	// PyTorch's scores for the new version (written by
	// internal/modelrepo/testdata/gen.sh with the model).
	data, err := os.ReadFile(filepath.Join(root, "internal", "modelrepo", "testdata", "karate_seed1_fixtures", "karate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Scores []float32 `json:"scores"`
	}
	if err := json.Unmarshal(data, &fx); err != nil || len(fx.Scores) != len(want) {
		t.Fatalf("karate_seed1 fixture: %v (%d scores)", err, len(fx.Scores))
	}
	if near(fx.Scores, want) {
		t.Fatal("karate_seed1 scores equal version 1's: the test cannot see a switch")
	}

	if err := os.Rename(filepath.Join(repo, ".staged"), filepath.Join(repo, "karate", "2")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := scores()
		if near(got, fx.Scores) {
			break
		}
		if !near(got, want) {
			t.Fatalf("scores %v are neither version 1's nor version 2's", got[:4])
		}
		if time.Now().After(deadline) {
			t.Fatalf("still version 1's scores 15s after version 2 was published\n%s", p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
