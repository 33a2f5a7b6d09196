package server

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/model"
)

func TestEmbeddedFilesRespectEnvironment(t *testing.T) {
	env := map[string]string{"GCNSERVE_MODEL": "/srv/m.onnx", "GCNSERVE_ORT_LIB": "/opt/libonnxruntime.so"}
	getenv, release, err := EmbeddedDefaults(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for k, want := range env {
		if got := getenv(k); got != want {
			t.Errorf("getenv(%s) = %q, want the environment's %q", k, got, want)
		}
	}
}

func TestEmbeddedKarateWhenNoModelFound(t *testing.T) {
	t.Chdir(t.TempDir()) // no model/karate.onnx here (nor beside the test binary)
	getenv, release, err := EmbeddedDefaults(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	path := getenv("GCNSERVE_MODEL")
	data, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(data, model.Karate) {
		t.Fatalf("GCNSERVE_MODEL = %q (read: %v); want a file holding the embedded karate model", path, err)
	}
	// Old enough for the repository's "file stopped changing" check.
	if st, err := os.Stat(path); err != nil || time.Since(st.ModTime()) < time.Second {
		t.Errorf("embedded model file mtime %v (%v): want older than a second", st.ModTime(), err)
	}
	if got := getenv("GCNSERVE_ADDR"); got != "" {
		t.Errorf("getenv passes other names through: got %q", got)
	}
}
