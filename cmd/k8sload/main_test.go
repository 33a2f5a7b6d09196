package main

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// An EndpointSlice list as the API server returns it for a headless Service
// during a rolling update: one pod ready, one terminating (ready false), one
// without a ready condition (counts as ready), one address in two slices.
const sliceList = `{"kind": "EndpointSliceList", "items": [
  {"endpoints": [
    {"addresses": ["10.0.0.3"], "conditions": {"ready": true}},
    {"addresses": ["10.0.0.9"], "conditions": {"ready": false, "terminating": true}}]},
  {"endpoints": [
    {"addresses": ["10.0.0.1"], "conditions": {}},
    {"addresses": ["10.0.0.3"], "conditions": {"ready": true}}]}]}`

func TestSliceResolverListsReadyEndpoints(t *testing.T) {
	var gotPath, gotQuery, gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery, gotAuth = r.URL.Path, r.URL.Query().Get("labelSelector"), r.Header.Get("Authorization")
		w.Write([]byte(sliceList))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	hc, err := apiClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	b := &sliceResolver{hc: hc, api: srv.URL, token: "tok", ns: "ns1", svc: "gcnserve-headless", port: 9999}
	got, err := b.list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("ready addresses: got %v, want %v (not-ready 10.0.0.9 left out, duplicates once)", got, want)
	}
	if want := "/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices"; gotPath != want {
		t.Errorf("path: got %q, want %q", gotPath, want)
	}
	if want := "kubernetes.io/service-name=gcnserve-headless"; gotQuery != want {
		t.Errorf("labelSelector: got %q, want %q", gotQuery, want)
	}
	if gotAuth != "Bearer tok" {
		t.Errorf("Authorization: got %q, want %q", gotAuth, "Bearer tok")
	}
}

func TestSliceResolverReportsAPIErrors(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	b := &sliceResolver{hc: srv.Client(), api: srv.URL, ns: "default", svc: "x", port: 1}
	if _, err := b.list(context.Background()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("got %v, want an error naming the 403", err)
	}
}

func TestApiClientRefusesNonPEM(t *testing.T) {
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := apiClient(f); err == nil || !strings.Contains(err.Error(), f) {
		t.Errorf("got %v, want an error naming %s", err, f)
	}
}

func TestStatsPhases(t *testing.T) {
	s := newStats()
	s.record("10.0.0.1", "1", nil)
	s.record("10.0.0.2", "1", nil)
	s.record("", "", errors.New("rpc error: code = Unavailable"))
	first := s.phase("rollout")
	for _, want := range []string{"phase=start", "requests=3 failed=1", "peers=10.0.0.1:1,10.0.0.2:1", "versions=10.0.0.1/1:1,10.0.0.2/1:1", "Unavailable"} {
		if !strings.Contains(first, want) {
			t.Errorf("first phase %q: want %q in it", first, want)
		}
	}
	s.record("10.0.0.2", "2", nil)
	second := s.phase("end")
	if want := "phase=rollout"; !strings.Contains(second, want) || !strings.Contains(second, "requests=1 failed=0 peers=10.0.0.2:1 versions=10.0.0.2/2:1") {
		t.Errorf("second phase %q: want only its own call, named %s", second, want)
	}
	if got, want := s.total.String(), "requests=4 failed=1"; !strings.HasPrefix(got, want) {
		t.Errorf("total %q: want prefix %q", got, want)
	}
}
