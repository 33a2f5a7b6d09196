package server

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gcnserve/gcnserve/internal/ortlib"
	"github.com/gcnserve/gcnserve/model"
)

// EmbeddedDefaults lets a lone binary run: it returns a getenv that supplies
// GCNSERVE_ORT_LIB (the ONNX Runtime library embedded by 'make build', as a
// memfd path; ortlib.Resolve) and GCNSERVE_MODEL (the embedded karate model,
// when no model/karate.onnx is found beside the binary) unless the
// environment sets them. Flags on the command line still win over both.
// release frees the library's copy once it is loaded; the model's stays,
// as the server re-reads the model file on every repository poll.
func EmbeddedDefaults(getenv func(string) string) (func(string) string, func(), error) {
	env := map[string]string{}
	release := func() {}
	if getenv("GCNSERVE_ORT_LIB") == "" && ortlib.Embedded() {
		lib, _, done, err := ortlib.Resolve("")
		if err != nil {
			return nil, nil, err
		}
		env["GCNSERVE_ORT_LIB"], release = lib, func() { done() }
	}
	if getenv("GCNSERVE_MODEL") == "" && !bundledModelFound() {
		path, _, err := ortlib.MemFile("karate.onnx", model.Karate)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("embedded karate model: %w", err)
		}
		// As old as the binary, and at least a minute: the repository loads
		// a file only once it has stopped changing (modelrepo MinFileAge).
		mtime := time.Now().Add(-time.Minute)
		if exe, err := os.Executable(); err == nil {
			if st, err := os.Stat(exe); err == nil && st.ModTime().Before(mtime) {
				mtime = st.ModTime()
			}
		}
		os.Chtimes(path, mtime, mtime)
		env["GCNSERVE_MODEL"] = path
	}
	return func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return getenv(k)
	}, release, nil
}

// bundledModelFound reports whether server.ParseFlags' default model file,
// model/karate.onnx in the working directory or the binary's source tree,
// exists.
func bundledModelFound() bool {
	if _, err := os.Stat("model/karate.onnx"); err == nil {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(filepath.Dir(exe), "..", "model", "karate.onnx"))
	return err == nil
}
