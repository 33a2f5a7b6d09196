package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// repoWith lays out a model repository: name -> versions, each a copy of
// the bundled model file given.
func repoWith(t *testing.T, models map[string]map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, versions := range models {
		for v, file := range versions {
			data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", file))
			if err != nil {
				t.Fatal(err)
			}
			vdir := filepath.Join(dir, name, v)
			if err := os.MkdirAll(vdir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(vdir, "model.onnx"), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// TestRoutingByModelName: a request naming a model is served by it, the
// result says which model and version answered, a tutorial-shaped request
// gets the default model, and unknown names or versions are NOT_FOUND
// naming what is served.
func TestRoutingByModelName(t *testing.T) {
	dir := repoWith(t, map[string]map[string]string{
		"karate": {"1": "karate.onnx", "3": "karate.onnx"},
		"cora":   {"2": "cora.onnx"},
	})
	conn := startRealConn(t, func(c *Config) {
		c.ModelRepository = dir
		c.DefaultModel = "karate"
		c.VersionPolicy = "all"
		c.RepositoryPollInterval = 0
	})
	client := gcnpb.NewGCNServiceClient(conn)
	ctx := context.Background()

	res, err := client.ProcessGraph(ctx, triangle())
	if err != nil {
		t.Fatal(err)
	}
	if res.GetModelName() != "karate" || res.GetModelVersion() != "3" {
		t.Errorf("default request answered by %s/%s, want karate/3 (highest served)", res.GetModelName(), res.GetModelVersion())
	}
	g := triangle()
	g.ModelName, g.ModelVersion = "karate", "1"
	if res, err = client.ProcessGraph(ctx, g); err != nil || res.GetModelVersion() != "1" {
		t.Errorf("karate version 1: %v, version %q", err, res.GetModelVersion())
	}

	info, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: "cora"})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetName() != "cora" || info.GetVersion() != "2" || info.GetFeatureDim() != 1433 {
		t.Errorf("GetModelInfo(cora) = %s/%s F=%d, want cora/2 F=1433", info.GetName(), info.GetVersion(), info.GetFeatureDim())
	}
	// A karate-shaped graph sent to cora has the wrong feature count.
	g = triangle()
	g.ModelName = "cora"
	_, err = client.ProcessGraph(ctx, g)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "model wants 1433") {
		t.Errorf("karate graph to cora: %v, want InvalidArgument naming 1433 features", err)
	}

	for _, tt := range []struct{ model, version, want string }{
		{"zebra", "", `model "zebra" not found; models: cora, karate`},
		{"karate", "2", `model "karate" has no served version 2; served versions: 1, 3`},
	} {
		g := triangle()
		g.ModelName, g.ModelVersion = tt.model, tt.version
		_, err := client.ProcessGraph(ctx, g)
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != tt.want {
			t.Errorf("ProcessGraph(%s/%s) = %v, want NotFound %q", tt.model, tt.version, err, tt.want)
		}
		_, err = client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: tt.model, ModelVersion: tt.version})
		if st := status.Convert(err); st.Code() != codes.NotFound {
			t.Errorf("GetModelInfo(%s/%s) = %v, want NotFound", tt.model, tt.version, err)
		}
	}
	g = triangle()
	g.ModelVersion = "x1"
	if _, err := client.ProcessGraph(ctx, g); status.Code(err) != codes.InvalidArgument {
		t.Errorf("version x1: %v, want InvalidArgument", err)
	}

	list, err := client.ListModels(ctx, &gcnpb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list.GetModels() {
		for _, v := range m.GetVersions() {
			got = append(got, m.GetName()+"/"+v.GetVersion()+"="+v.GetState())
		}
	}
	if want := "cora/2=READY karate/1=READY karate/3=READY"; strings.Join(got, " ") != want || list.GetDefaultModel() != "karate" {
		t.Errorf("ListModels = %q default %q, want %q default karate", strings.Join(got, " "), list.GetDefaultModel(), want)
	}

	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "GCNService", HealthServiceName("karate"), HealthServiceName("cora")} {
		res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v, want SERVING", svc, res.GetStatus(), err)
		}
	}
}
