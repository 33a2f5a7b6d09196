// Package reload tests model hot reload on the real binary: a reload storm
// under concurrent load, with zero failed requests and every answer equal to
// the golden answer of exactly the version that says it answered.
package reload

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gcnserve/gcnserve/gcn"
	pb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

// startServer runs gcnserve on a free loopback port, with the ONNX Runtime
// library the goldens use, until health says SERVING (30s at most).
func startServer(t *testing.T, args ...string) *servertest.Server {
	t.Helper()
	lib := testenv.ORTLibrary(t)
	return servertest.Run(t, servertest.Options{Env: []string{"GCNSERVE_ORT_LIB=" + lib}, Args: args, Timeout: 30 * time.Second})
}

// rssKiB reads VmRSS and VmHWM of the server.
func rssKiB(t *testing.T, s *servertest.Server) (rss, hwm int64) {
	t.Helper()
	return s.Memory(t, "VmRSS") >> 10, s.Memory(t, "VmHWM") >> 10
}

// request is one model's test graph: the wire request and its tensors.
type request struct {
	model string // "" for the default model
	msg   *pb.GraphData
	ids   []string
	t     gcn.Tensors
}

// newRequest makes a graph of n nodes with f random binary features, a ring
// and some chords, fixed by seed.
func newRequest(model string, f, n int, seed uint64) request {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := request{model: model, msg: &pb.GraphData{ModelName: model}, t: gcn.Tensors{NumNodes: n, Features: make([]float32, n*f)}}
	for i := range n {
		id := "n" + strconv.Itoa(i)
		feats := r.t.Features[i*f : (i+1)*f]
		for j := range feats {
			if rng.IntN(5) == 0 {
				feats[j] = 1
			}
		}
		r.ids = append(r.ids, id)
		r.msg.Nodes = append(r.msg.Nodes, &pb.Node{Id: id, Features: feats})
	}
	var src, dst []int64
	for i := range n {
		src, dst = append(src, int64(i)), append(dst, int64((i+1)%n))
		if j := rng.IntN(n); j != i {
			src, dst = append(src, int64(i)), append(dst, int64(j))
		}
	}
	for k := range src {
		r.msg.Edges = append(r.msg.Edges, &pb.Edge{SourceId: r.ids[src[k]], TargetId: r.ids[dst[k]]})
	}
	r.t.EdgeIndex = append(src, dst...)
	return r
}

// goldens computes each fixture's scores for a request with the real ONNX
// Runtime, in this process.
type goldens struct {
	lib string
	mu  sync.Mutex
	by  map[string][]float32 // fixture path + "|" + model
}

func (g *goldens) scores(t *testing.T, path string, r request) []float32 {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	key := path + "|" + r.model
	if s, ok := g.by[key]; ok {
		return s
	}
	m, err := gcn.Open(path, gcn.WithLibraryPath(g.lib))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := m.Predict(testenv.Context(t), r.t)
	if err != nil {
		t.Fatal(err)
	}
	g.by[key] = p.Scores
	return p.Scores
}

// change is one step of the storm.
type change struct {
	model, what string // what: publish, remove, corrupt, truncated, contract, half-written
	version     int
	fixture     string // for publish and half-written
}

// TestReloadStorm: 16 clients call both models while the repository changes
// 34 times (new versions of two models, removed versions, a corrupt file, a
// truncated file, a half-written file, contract-breaking models), by polling
// and by SIGHUP. Zero requests may fail, health must stay SERVING, and every
// answer must equal the golden scores of the version it names.
func TestReloadStorm(t *testing.T) {
	root := testenv.RepoRoot(t)
	lib := testenv.ORTLibrary(t)
	fx := func(name string) string {
		switch name {
		case "karate", "cora":
			return filepath.Join(root, "model", name+".onnx")
		}
		return filepath.Join(root, "internal", "modelrepo", "testdata", name+".onnx")
	}
	repo := t.TempDir()
	stage := filepath.Join(repo, ".stage") // hidden: the server ignores it
	// versions[model][version] is the fixture a served version was made from.
	var versionsMu sync.Mutex
	versions := map[string]map[string]string{"karate": {}, "cora": {}}
	servertest.CopyFile(t, fx("karate"), filepath.Join(repo, "karate", "1", "model.onnx"))
	servertest.CopyFile(t, fx("cora"), filepath.Join(repo, "cora", "1", "model.onnx"))
	versions["karate"]["1"], versions["cora"]["1"] = fx("karate"), fx("cora")

	karateSeeds := []string{"karate_seed1", "karate_seed2", "karate_seed3", "karate"}
	coraFiles := []string{"cora_random1", "cora"}
	var plan []change
	kv, cv := 1, 1
	for round := range 4 {
		kv++
		plan = append(plan, change{"karate", "publish", kv, karateSeeds[round%4]})
		cv++
		plan = append(plan, change{"cora", "publish", cv, coraFiles[round%2]})
		kv++
		plan = append(plan, change{"karate", "publish", kv, karateSeeds[(round+1)%4]})
		plan = append(plan, change{"karate", "remove", kv, ""}) // back to kv-1
		kv++
		bad := []string{"corrupt", "truncated", "contract", "half-written"}[round]
		if bad == "half-written" {
			plan = append(plan, change{"karate", bad, kv, karateSeeds[(round+2)%4]})
		} else {
			plan = append(plan, change{"karate", bad, kv, ""})
		}
		cv++
		plan = append(plan, change{"cora", []string{"contract", "corrupt", "truncated", "contract"}[round], cv, ""})
		cv++
		plan = append(plan, change{"cora", "publish", cv, coraFiles[(round+1)%2]})
		plan = append(plan, change{"cora", "remove", cv, ""})
	}
	kv++
	plan = append(plan, change{"karate", "publish", kv, "karate_seed2"})
	cv++
	plan = append(plan, change{"cora", "publish", cv, "cora_random1"})
	if len(plan) < 30 {
		t.Fatalf("plan has %d changes, want >= 30", len(plan))
	}
	// Stage every good file now, so that its mtime is old by the time it is
	// renamed in: publishing is a rename of a complete directory.
	for i, c := range plan {
		if c.what == "publish" {
			servertest.CopyFile(t, fx(c.fixture), filepath.Join(stage, strconv.Itoa(i), "model.onnx"))
		}
	}

	srv := startServer(t, "--model-repository", repo, "--default-model", "karate",
		"--repository-poll-interval", "200ms", "--drain-delay", "0s")
	rssStart, _ := rssKiB(t, srv)
	conn := servertest.Dial(t, srv.Addr)
	client := pb.NewGCNServiceClient(conn)
	g := &goldens{lib: lib, by: map[string][]float32{}}
	reqs := []request{newRequest("", 34, 34, 1), newRequest("cora", 1433, 40, 2)}
	for _, r := range reqs { // warm the golden cache off the clock
		for _, f := range append(slices.Clone(karateSeeds), coraFiles...) {
			if (r.model == "cora") == strings.HasPrefix(f, "cora") {
				g.scores(t, fx(f), r)
			}
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	var requests, failures atomic.Int64
	var servedMu sync.Mutex
	served := map[string]int{} // "model/version" -> responses
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := reqs[c%2]
			for ctx.Err() == nil {
				res, err := client.ProcessGraph(ctx, r.msg)
				if ctx.Err() != nil {
					return
				}
				requests.Add(1)
				if err != nil {
					if failures.Add(1) <= 5 {
						t.Errorf("client %d: ProcessGraph(%q): %v", c, r.model, err)
					}
					continue
				}
				want := cmpName(r.model)
				versionsMu.Lock()
				path, ok := versions[res.ModelName][res.ModelVersion]
				versionsMu.Unlock()
				if res.ModelName != want || !ok {
					if failures.Add(1) <= 5 {
						t.Errorf("client %d: answered by %q version %q, want a published version of %q", c, res.ModelName, res.ModelVersion, want)
					}
					continue
				}
				gold := g.scores(t, path, r)
				for i, id := range r.ids {
					if got := res.NodeScores[id]; math.Abs(float64(got-gold[i])) > 1e-5 {
						if failures.Add(1) <= 5 {
							t.Errorf("client %d: %s v%s node %s: score %v, golden %v (%s)", c, res.ModelName, res.ModelVersion, id, got, gold[i], filepath.Base(path))
						}
						break
					}
				}
				servedMu.Lock()
				served[res.ModelName+"/"+res.ModelVersion]++
				servedMu.Unlock()
			}
		}()
	}
	// Health must stay SERVING throughout, overall and per model.
	var healthChecks, healthBad atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		h := healthpb.NewHealthClient(conn)
		for ctx.Err() == nil {
			for _, svc := range []string{"", "gcnserve.model.karate", "gcnserve.model.cora"} {
				res, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
				if ctx.Err() != nil {
					return
				}
				healthChecks.Add(1)
				if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
					if healthBad.Add(1) <= 3 {
						t.Errorf("health %q: %v %v", svc, res.GetStatus(), err)
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// waitServed waits until ListModels shows the highest READY version of
	// model is v (the switch happened).
	waitServed := func(model string, v int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if highestReady(t, client, model) == strconv.Itoa(v) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("%s: version %d not served 10s after it was published (serving %s)", model, v, highestReady(t, client, model))
	}
	start := time.Now()
	if os.Getenv("STORM_CONTROL") != "" {
		// Measurement knob: the same load for 15s without any change, to
		// tell the server's RSS growth under load from that of reloads.
		time.Sleep(15 * time.Second)
		stop()
		wg.Wait()
		rss, hwm := rssKiB(t, srv)
		t.Logf("control: %d requests, %d failed, no changes; server RSS %d -> %d KiB (HWM %d)", requests.Load(), failures.Load(), rssStart, rss, hwm)
		return
	}
	latest := map[string]int{"karate": 1, "cora": 1}
	refusals := 0
	for i, c := range plan {
		dir := filepath.Join(repo, c.model, strconv.Itoa(c.version))
		switch c.what {
		case "publish":
			versionsMu.Lock()
			versions[c.model][strconv.Itoa(c.version)] = fx(c.fixture)
			versionsMu.Unlock()
			if err := os.Rename(filepath.Join(stage, strconv.Itoa(i)), dir); err != nil {
				t.Fatal(err)
			}
		case "remove":
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		case "corrupt":
			refusals++
			writeAtomically(t, dir, []byte("this is not an ONNX model \x00\xff\xfe"))
		case "truncated":
			refusals++
			data, _ := os.ReadFile(fx("karate"))
			writeAtomically(t, dir, data[:len(data)*2/3])
		case "contract":
			refusals++
			data, _ := os.ReadFile(fx("bad_contract"))
			writeAtomically(t, dir, data)
		case "half-written":
			// A plain non-atomic copy, paused half way for less than the
			// server's minimum file age (1s): never loaded half.
			data, _ := os.ReadFile(fx(c.fixture))
			versionsMu.Lock()
			versions[c.model][strconv.Itoa(c.version)] = fx(c.fixture)
			versionsMu.Unlock()
			os.MkdirAll(dir, 0o755)
			f, err := os.Create(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			f.Write(data[:len(data)/2])
			f.Sync()
			time.Sleep(400 * time.Millisecond)
			f.Write(data[len(data)/2:])
			f.Close()
		}
		if i%3 == 0 {
			srv.Signal(t, syscall.SIGHUP)
		}
		switch c.what {
		case "publish", "half-written":
			latest[c.model] = c.version
			waitServed(c.model, c.version)
		case "remove":
			prev := 0
			versionsMu.Lock()
			for v := range versions[c.model] {
				if n, _ := strconv.Atoi(v); n < c.version && n > prev {
					prev = n
				}
			}
			versionsMu.Unlock()
			latest[c.model] = prev
			waitServed(c.model, prev)
		default:
			time.Sleep(300 * time.Millisecond) // give it time to be refused
		}
		time.Sleep(100 * time.Millisecond) // let traffic run on this state
	}
	storm := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()

	rssEnd, hwmEnd := rssKiB(t, srv)
	if n := requests.Load(); n < 1000 || failures.Load() != 0 {
		t.Errorf("%d requests, %d failed; want >= 1000 and 0", n, failures.Load())
	}
	if healthBad.Load() != 0 || healthChecks.Load() == 0 {
		t.Errorf("%d of %d health checks not SERVING", healthBad.Load(), healthChecks.Load())
	}
	for model, v := range latest {
		if got := highestReady(t, client, model); got != strconv.Itoa(v) {
			t.Errorf("%s ends serving %s, want %d", model, got, v)
		}
	}
	log := srv.Log()
	if n := strings.Count(log, "model file refused"); n != refusals {
		t.Errorf("%d refusal log lines, want %d (one per bad file)", n, refusals)
	}
	half := filepath.Join(repo, "karate", strconv.Itoa(halfWrittenVersion(plan)), "model.onnx")
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, "model file refused") && strings.Contains(line, half) {
			t.Errorf("the half-written file was tried before it was complete: %s", line)
		}
	}
	servedMu.Lock()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range served {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, served[k]))
	}
	servedMu.Unlock()
	t.Logf("%d changes in %s, %d requests, %d failed, %d refusals logged; server RSS %d -> %d KiB (HWM %d)",
		len(plan), storm.Round(time.Millisecond), requests.Load(), failures.Load(), refusals, rssStart, rssEnd, hwmEnd)
	t.Logf("responses by version: %s", strings.Join(parts, " "))
}

func cmpName(model string) string {
	if model == "" {
		return "karate"
	}
	return model
}

func halfWrittenVersion(plan []change) int {
	for _, c := range plan {
		if c.what == "half-written" {
			return c.version
		}
	}
	return -1
}

// writeAtomically publishes data as dir/model.onnx by renaming a staged
// directory into place.
func writeAtomically(t *testing.T, dir string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
}

// highestReady returns the highest READY version of model in ListModels.
func highestReady(t *testing.T, c pb.GCNServiceClient, model string) string {
	t.Helper()
	res, err := c.ListModels(testenv.Context(t), &pb.ListModelsRequest{})
	if err != nil {
		t.Errorf("ListModels: %v", err)
		return ""
	}
	best := 0
	for _, m := range res.Models {
		if m.Name != model {
			continue
		}
		for _, v := range m.Versions {
			if n, _ := strconv.Atoi(v.Version); v.State == "READY" && n > best {
				best = n
			}
		}
	}
	return strconv.Itoa(best)
}
