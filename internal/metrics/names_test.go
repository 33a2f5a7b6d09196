package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/metrics"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// everySeries returns Metrics with one series in every family, so Gather
// lists them all (a vector with no series is not gathered).
func everySeries() *metrics.Metrics {
	m := metrics.New(metrics.Options{})
	m.ObservePhases("karate", metrics.Phases{Run: time.Millisecond}, 34, 78, 1)
	m.ModelLoaded("karate", "1", "ab")
	m.ModelUnloaded("karate", "0", "cd")
	m.ModelLoadFailed("karate")
	m.RepositoryReloaded(errors.New("x"))
	m.SetAdmissionQueueLength(1)
	m.SetAdmissionBytes(1, 2)
	m.ObserveAdmissionWait(time.Millisecond)
	m.AdmissionRejected("queue_full")
	m.AuthFailed(metrics.ProtocolGRPC, "missing")
	m.SetStoredGraphs(1, 34, 78, 4096)
	m.GraphDelta("applied", time.Millisecond, 3)
	m.GraphScored(time.Millisecond)
	m.GraphStoreWrite("append", time.Millisecond)
	m.GraphModelRefused("removed")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	m.HTTPMiddleware(mux, mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader("x")))
	return m
}

// TestNamingConventions: every gcnserve metric follows Prometheus naming
// (counters end in _total, no counter-like names on gauges, units in base
// units), and every family has help text.
func TestNamingConventions(t *testing.T) {
	m := everySeries()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		name := f.GetName()
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		if !strings.HasPrefix(name, "gcnserve_") {
			continue
		}
		switch f.GetType().String() {
		case "COUNTER":
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		default:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("%s %s ends in _total but is not a counter", f.GetType(), name)
			}
		}
		for _, bad := range []string{"_ms", "_milliseconds", "_ns", "_nanoseconds", "_kb", "_mb"} {
			if strings.Contains(name, bad) {
				t.Errorf("%s: use base units (_seconds, _bytes), not %s", name, bad)
			}
		}
	}
}

// TestMonitoringReferencesExist: every metric the Grafana dashboard and the
// alert rules query is one the server exports, so a rename cannot silently
// blank a panel or disarm an alert.
func TestMonitoringReferencesExist(t *testing.T) {
	fams, err := everySeries().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	name := regexp.MustCompile(`\b(gcnserve|go|process)_[a-z_]+`)
	dir := filepath.Join(testenv.RepoRoot(t), "deploy", "monitoring")
	for _, file := range []string{"grafana-dashboard.json", "alerts.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		refs := name.FindAllString(string(b), -1)
		if len(refs) < 5 {
			t.Fatalf("%s references only %d metrics", file, len(refs))
		}
		for _, ref := range refs {
			base := ref
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if s, ok := strings.CutSuffix(ref, suffix); ok && exported[s] {
					base = s
				}
			}
			if !exported[base] {
				t.Errorf("%s references %s, which /metrics does not export", file, ref)
			}
		}
	}
}

// TestAlertRules runs promtool on the shipped alert rules: they parse, and
// their unit tests (deploy/monitoring/alerts_test.yaml) fire as expected.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool (Debian package prometheus)")
	}
	dir := filepath.Join(testenv.RepoRoot(t), "deploy", "monitoring")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
