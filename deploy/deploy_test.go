// Package deploy checks the manifests under deploy/ and the Dockerfile:
// every Kubernetes object decodes strictly into the real k8s.io/api type
// (an unknown or misspelt field fails), and the numbers that must agree
// with the server's flags do (probe ports, memory limit vs.
// --max-inflight-bytes, grace period vs. --drain-delay + --shutdown-grace),
// reading each container's args with the server's own server.ParseFlags.
//
// KServe's resources decode into the small mirror types below, whose
// containers are the real corev1.Container; the full KServe schema is checked
// by scripts/k8s_check.sh against a real API server with KServe's CRDs.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/gcnserve/gcnserve/internal/server"
)

// object is one YAML document of a manifest file.
type object struct {
	file string
	kind string
	data []byte
}

// manifests reads every *.yaml under deploy/, split into documents.
func manifests(t *testing.T) []object {
	t.Helper()
	var objs []object
	for _, dir := range []string{"kubernetes", "kserve"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
				if strings.TrimSpace(stripComments(doc)) == "" {
					continue
				}
				var tm metav1.TypeMeta
				if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
					return fmt.Errorf("%s document %d: %w", path, i, err)
				}
				objs = append(objs, object{file: path, kind: tm.APIVersion + "/" + tm.Kind, data: []byte(doc)})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// decodeStrict fills v from o as the API server's strict field validation
// reads it: field names are case-sensitive (encoding/json's are not), and
// unknown or duplicate fields fail.
func decodeStrict(t *testing.T, o object, v any) {
	t.Helper()
	if err := unmarshalStrict(o.data, v); err != nil {
		t.Fatalf("%s (%s): %v", o.file, o.kind, err)
	}
}

func unmarshalStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, v)
	return errors.Join(append(strict, err)...)
}

// Mirrors of KServe's types, for the fields these manifests use.
type servingRuntime struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Annotations           map[string]string `json:"annotations"`
		SupportedModelFormats []struct {
			Name       string `json:"name"`
			Version    string `json:"version"`
			AutoSelect *bool  `json:"autoSelect"`
			Priority   *int32 `json:"priority"`
		} `json:"supportedModelFormats"`
		ProtocolVersions []string           `json:"protocolVersions"`
		MultiModel       *bool              `json:"multiModel"`
		Containers       []corev1.Container `json:"containers"`
	} `json:"spec"`
}

type inferenceService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Predictor struct {
			MinReplicas                   *int32 `json:"minReplicas"`
			MaxReplicas                   int32  `json:"maxReplicas"`
			ScaleMetric                   string `json:"scaleMetric"`
			ScaleTarget                   *int32 `json:"scaleTarget"`
			TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds"`
			Model                         struct {
				ModelFormat struct {
					Name    string `json:"name"`
					Version string `json:"version"`
				} `json:"modelFormat"`
				Runtime         string                 `json:"runtime"`
				ProtocolVersion string                 `json:"protocolVersion"`
				StorageURI      string                 `json:"storageUri"`
				Ports           []corev1.ContainerPort `json:"ports"`
			} `json:"model"`
		} `json:"predictor"`
	} `json:"spec"`
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path   string `json:"path"`
		Patch  string `json:"patch"`
		Target *struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
	} `json:"patches"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// parseArgs parses a container's args with the server's own parser
// (server.ParseFlags, no environment), failing on an unknown flag or a bad
// value, and returns the values the checks need, defaults included.
func parseArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	// ParseFlags checks that the repository exists: stand in a local one.
	repo, local := "", t.TempDir()
	parsed := make([]string, len(args))
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--model-repository="); ok {
			repo, a = v, "--model-repository="+local
		}
		parsed[i] = a
	}
	cfg, err := server.ParseFlags(parsed, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("%s: gcnserve refuses args %q: %v", where, args, err)
	}
	return map[string]string{
		"addr":               cfg.Addr,
		"http-addr":          cfg.HTTPAddr,
		"drain-delay":        cfg.DrainDelay.String(),
		"shutdown-grace":     cfg.ShutdownGrace.String(),
		"max-inflight-bytes": strconv.FormatInt(cfg.MaxInflightBytes, 10),
		"model-repository":   repo,
	}
}

func port(t *testing.T, where, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	return int32(n)
}

func duration(t *testing.T, where, name, v string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: --%s=%q: %v", where, name, v, err)
	}
	return d
}

// checkContainer checks a gcnserve container against its own flags and
// returns the flags.
func checkContainer(t *testing.T, where string, c corev1.Container, ports map[string]int32) map[string]string {
	t.Helper()
	flags := parseArgs(t, where, c.Args)
	grpcPort := port(t, where, flags["addr"])
	var httpPort int32
	if flags["http-addr"] != "" {
		httpPort = port(t, where, flags["http-addr"])
	}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		if p.ContainerPort != grpcPort && p.ContainerPort != httpPort {
			t.Errorf("%s: containerPort %s=%d is neither --addr (%d) nor --http-addr (%d)", where, p.Name, p.ContainerPort, grpcPort, httpPort)
		}
	}
	for name, pr := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if pr == nil {
			continue
		}
		switch {
		case pr.GRPC != nil:
			if pr.GRPC.Port != grpcPort {
				t.Errorf("%s: %s probes gRPC port %d, but --addr listens on %d", where, name, pr.GRPC.Port, grpcPort)
			}
			if s := pr.GRPC.Service; s != nil && *s != "" && *s != "GCNService" && !strings.HasPrefix(*s, "gcnserve.model.") {
				t.Errorf("%s: %s asks for health service %q; gcnserve has \"\", GCNService and gcnserve.model.<name>", where, name, *s)
			}
		case pr.HTTPGet != nil:
			if pr.HTTPGet.Port.IntVal != httpPort || httpPort == 0 {
				t.Errorf("%s: %s probes HTTP port %s, but --http-addr is %q", where, name, pr.HTTPGet.Port.String(), flags["http-addr"])
			}
			if p := pr.HTTPGet.Path; !slices.Contains([]string{"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}, p) {
				t.Errorf("%s: %s probes %s, which gcnserve does not serve", where, name, p)
			}
		default:
			t.Errorf("%s: %s is neither gRPC nor HTTP", where, name)
		}
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("%s: want both readiness and liveness probes", where)
	}
	if lp := c.LivenessProbe; lp != nil {
		// Liveness must not kill a pod in the middle of its drain.
		window := time.Duration(lp.PeriodSeconds*lp.FailureThreshold) * time.Second
		drain := duration(t, where, "drain-delay", flags["drain-delay"]) + duration(t, where, "shutdown-grace", flags["shutdown-grace"])
		if window <= drain {
			t.Errorf("%s: liveness gives up after %v, within the drain (%v)", where, window, drain)
		}
	}

	// Memory: the admission budget is about half the limit; the rest is the
	// model session, ORT's arenas and the Go runtime.
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatalf("%s: no memory limit", where)
	}
	if req := c.Resources.Requests[corev1.ResourceMemory]; req.Cmp(limit) != 0 {
		t.Errorf("%s: memory request %s != limit %s (the budget is planned against a guaranteed amount)", where, req.String(), limit.String())
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Errorf("%s: no CPU request (the HorizontalPodAutoscaler scales on CPU use against it)", where)
	}
	budget, err := resource.ParseQuantity(flags["max-inflight-bytes"])
	if err != nil {
		t.Fatalf("%s: --max-inflight-bytes=%q: %v", where, flags["max-inflight-bytes"], err)
	}
	if share := float64(budget.Value()) / float64(limit.Value()); share < 0.4 || share > 0.6 {
		t.Errorf("%s: --max-inflight-bytes is %.0f%% of the memory limit %s, want about half (40-60%%)", where, 100*share, limit.String())
	}

	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: securityContext %+v: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop ALL", where, sc)
	}
	return flags
}

// checkGrace: SIGTERM comes after preStop; then the server drains for
// --drain-delay and lets calls finish for --shutdown-grace. All of it must
// fit in the grace period, with a margin for the process to exit.
func checkGrace(t *testing.T, where string, grace *int64, c corev1.Container, flags map[string]string) {
	t.Helper()
	if grace == nil {
		t.Errorf("%s: no terminationGracePeriodSeconds", where)
		return
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	need := preStop + duration(t, where, "drain-delay", flags["drain-delay"]) + duration(t, where, "shutdown-grace", flags["shutdown-grace"]) + 2*time.Second
	if got := time.Duration(*grace) * time.Second; got < need {
		t.Errorf("%s: terminationGracePeriodSeconds %v < preStop %v + --drain-delay %s + --shutdown-grace %s + 2s",
			where, got, preStop, flags["drain-delay"], flags["shutdown-grace"])
	}
}

func TestKubernetesManifests(t *testing.T) {
	var (
		deploy    *appsv1.Deployment
		services  []corev1.Service
		hpa       *autoscalingv2.HorizontalPodAutoscaler
		pdb       *policyv1.PodDisruptionBudget
		pvcs      []corev1.PersistentVolumeClaim
		kustomize = map[string]kustomization{}
	)
	for _, o := range manifests(t) {
		if !strings.HasPrefix(o.file, "kubernetes/") {
			continue
		}
		if dir := filepath.Dir(o.file); dir != "kubernetes/base" {
			// A variant: its kustomization (k8s_check.sh builds it and has
			// the API server validate the result), and for the lab of
			// `make k8s-e2e` a hostPath PersistentVolume for the claim.
			if o.kind == "v1/PersistentVolume" {
				var pv corev1.PersistentVolume
				decodeStrict(t, o, &pv)
				if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != "gcnserve-models" {
					t.Errorf("%s: want a PersistentVolume bound to the claim gcnserve-models (claimRef)", o.file)
				}
				continue
			}
			var k kustomization
			decodeStrict(t, o, &k)
			if o.kind != "kustomize.config.k8s.io/v1beta1/Kustomization" ||
				!(slices.Contains(k.Resources, "../base") || slices.Contains(k.Resources, "base")) {
				t.Errorf("%s: want a Kustomization over the base (resources: [../base])", o.file)
			}
			continue
		}
		switch o.kind {
		case "apps/v1/Deployment":
			deploy = &appsv1.Deployment{}
			decodeStrict(t, o, deploy)
		case "v1/Service":
			var s corev1.Service
			decodeStrict(t, o, &s)
			services = append(services, s)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			hpa = &autoscalingv2.HorizontalPodAutoscaler{}
			decodeStrict(t, o, hpa)
		case "policy/v1/PodDisruptionBudget":
			pdb = &policyv1.PodDisruptionBudget{}
			decodeStrict(t, o, pdb)
		case "v1/PersistentVolumeClaim":
			var p corev1.PersistentVolumeClaim
			decodeStrict(t, o, &p)
			pvcs = append(pvcs, p)
		case "kustomize.config.k8s.io/v1beta1/Kustomization":
			var k kustomization
			decodeStrict(t, o, &k)
			kustomize[filepath.Dir(o.file)] = k
		default:
			t.Errorf("%s: unexpected kind %s (teach this test to decode it)", o.file, o.kind)
		}
	}
	if deploy == nil || hpa == nil || pdb == nil || len(services) != 2 || len(pvcs) != 1 {
		t.Fatalf("want a Deployment, an HPA, a PDB, two Services and a PVC; got deployment %v, hpa %v, pdb %v, %d services, %d PVCs",
			deploy != nil, hpa != nil, pdb != nil, len(services), len(pvcs))
	}

	pod := deploy.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	flags := checkContainer(t, "Deployment", c, ports)
	checkGrace(t, "Deployment", pod.Spec.TerminationGracePeriodSeconds, c, flags)
	if c.StartupProbe == nil {
		t.Error("Deployment: no startupProbe (liveness would count the model load as failures)")
	}
	if psc := pod.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("Deployment: pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if deploy.Spec.Replicas != nil {
		t.Error("Deployment sets replicas; leave it to the HPA (each apply would reset it)")
	}
	if ru := deploy.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("Deployment: want rollingUpdate.maxUnavailable 0 (a rollout never drops below the replica count)")
	}
	podLabels := labels.Set(pod.Labels)
	if sel, err := metav1.LabelSelectorAsSelector(deploy.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", deploy.Spec.Selector, pod.Labels)
	}

	// The model repository comes from a read-only volume at --model-repository.
	repo := flags["model-repository"]
	if repo == "" {
		t.Fatal("Deployment: no --model-repository")
	}
	var mounted *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == repo {
			mounted = &c.VolumeMounts[i]
		}
	}
	if mounted == nil || !mounted.ReadOnly {
		t.Fatalf("Deployment: --model-repository=%s is not a read-only volume mount (%+v)", repo, c.VolumeMounts)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == mounted.Name && (v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != pvcs[0].Name) {
			t.Errorf("Deployment: volume %s is not the PVC %s", v.Name, pvcs[0].Name)
		}
	}

	var headless, normal bool
	for _, s := range services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selects %v, not the pods %v", s.Name, s.Spec.Selector, pod.Labels)
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort.IntVal
			if p.TargetPort.Type == intstr.String {
				target = ports[p.TargetPort.StrVal]
			}
			if target == 0 || (target != port(t, "addr", flags["addr"]) && target != port(t, "http-addr", flags["http-addr"])) {
				t.Errorf("Service %s port %s targets %s, which is no gcnserve listener", s.Name, p.Name, p.TargetPort.String())
			}
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = true
			if s.Spec.PublishNotReadyAddresses {
				t.Errorf("headless Service %s publishes not-ready pods: clients would keep draining pods", s.Name)
			}
		} else {
			normal = true
		}
	}
	if !headless || !normal {
		t.Errorf("want a headless Service (client-side round_robin) and a normal one; headless %v, normal %v", headless, normal)
	}

	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != deploy.Name {
		t.Errorf("HPA targets %+v, want Deployment %s", hpa.Spec.ScaleTargetRef, deploy.Name)
	}
	if len(hpa.Spec.Metrics) == 0 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("HPA metrics %+v, want CPU", hpa.Spec.Metrics)
	}
	min := int32(1)
	if hpa.Spec.MinReplicas != nil {
		min = *hpa.Spec.MinReplicas
	}
	if min < 2 {
		t.Errorf("HPA minReplicas %d: a PDB cannot keep one replica serving during a disruption", min)
	}
	if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("PDB selector %v does not match the pods %v", pdb.Spec.Selector, pod.Labels)
	}
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.IntValue() >= int(min) {
		t.Errorf("PDB maxUnavailable %v: want fewer than minReplicas %d", mu, min)
	}

	// kustomization.yaml names every manifest of its directory.
	k, ok := kustomize["kubernetes/base"]
	if !ok {
		t.Fatal("no deploy/kubernetes/base/kustomization.yaml")
	}
	files, _ := filepath.Glob("kubernetes/base/*.yaml")
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
}

func TestKServeManifests(t *testing.T) {
	var runtimes []servingRuntime
	var services []inferenceService
	for _, o := range manifests(t) {
		if !strings.HasPrefix(o.file, "kserve") {
			continue
		}
		switch o.kind {
		case "serving.kserve.io/v1alpha1/ServingRuntime":
			var r servingRuntime
			decodeStrict(t, o, &r)
			runtimes = append(runtimes, r)
		case "serving.kserve.io/v1beta1/InferenceService":
			var s inferenceService
			decodeStrict(t, o, &s)
			services = append(services, s)
		default:
			t.Errorf("%s: unexpected kind %s", o.file, o.kind)
		}
	}
	if len(runtimes) != 1 || len(services) == 0 {
		t.Fatalf("want one ServingRuntime and InferenceServices, got %d and %d", len(runtimes), len(services))
	}
	rt := runtimes[0]
	if !slices.Contains(rt.Spec.ProtocolVersions, "v2") || !slices.Contains(rt.Spec.ProtocolVersions, "grpc-v2") {
		t.Errorf("ServingRuntime protocolVersions %v, want v2 and grpc-v2 (Open Inference Protocol)", rt.Spec.ProtocolVersions)
	}
	if len(rt.Spec.Containers) != 1 || rt.Spec.Containers[0].Name != "kserve-container" {
		t.Fatalf("ServingRuntime: want one container named kserve-container")
	}
	c := rt.Spec.Containers[0]
	flags := checkContainer(t, "ServingRuntime", c, map[string]int32{})
	if flags["model-repository"] != "/mnt/models" {
		t.Errorf("ServingRuntime: --model-repository=%q, want /mnt/models (where KServe mounts storageUri)", flags["model-repository"])
	}
	if flags["http-addr"] == "" || len(c.Ports) == 0 || c.Ports[0].ContainerPort != port(t, "http-addr", flags["http-addr"]) {
		t.Errorf("ServingRuntime: the first port (KServe's HTTP target) must be --http-addr %q; ports %+v", flags["http-addr"], c.Ports)
	}
	for _, s := range services {
		p := s.Spec.Predictor
		if p.Model.Runtime != rt.Name {
			t.Errorf("InferenceService %s: runtime %q, want %q", s.Name, p.Model.Runtime, rt.Name)
		}
		if !slices.Contains(rt.Spec.ProtocolVersions, p.Model.ProtocolVersion) {
			t.Errorf("InferenceService %s: protocolVersion %q, not one the runtime speaks", s.Name, p.Model.ProtocolVersion)
		}
		formatOK := false
		for _, f := range rt.Spec.SupportedModelFormats {
			formatOK = formatOK || (f.Name == p.Model.ModelFormat.Name && f.Version == p.Model.ModelFormat.Version)
		}
		if !formatOK {
			t.Errorf("InferenceService %s: modelFormat %+v is not supported by the runtime", s.Name, p.Model.ModelFormat)
		}
		checkGrace(t, "InferenceService "+s.Name, p.TerminationGracePeriodSeconds, c, flags)
		if p.Model.ProtocolVersion == "grpc-v2" {
			if len(p.Model.Ports) != 1 || p.Model.Ports[0].Name != "h2c" || p.Model.Ports[0].ContainerPort != port(t, "addr", flags["addr"]) {
				t.Errorf("InferenceService %s (grpc-v2): want one port named h2c on --addr %s, got %+v", s.Name, flags["addr"], p.Model.Ports)
			}
		}
	}
}

// TestDockerfile: ports, a non-root user, no HEALTHCHECK.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var expose []string
	var user string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "EXPOSE":
			expose = append(expose, f[1:]...)
		case "USER":
			user = f[1]
		case "HEALTHCHECK":
			t.Error("Dockerfile has a HEALTHCHECK; probes are the orchestrator's")
		}
	}
	if !slices.Contains(expose, "9999") || !slices.Contains(expose, "8000") {
		t.Errorf("Dockerfile EXPOSE %v, want 9999 (--addr) and 8000 (--http-addr)", expose)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("Dockerfile USER %q, want a non-root user", user)
	}
	if !bytes.Contains(data, []byte("ARG BASE=")) {
		t.Error("Dockerfile has no ARG BASE")
	}
}

// TestDecodeIsStrict: the decoder the checks rely on refuses what the API
// server's strict validation would.
func TestDecodeIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"misspelt field":  "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIPs: [None], selectr: {}}\n",
		"wrong case":      "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n",
		"duplicate field": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n",
	} {
		var s corev1.Service
		if err := unmarshalStrict([]byte(doc), &s); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
