package modelrepo

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// writeFile writes data at dir/rel, making directories, with mtime set
// age ago.
func writeFile(t *testing.T, dir, rel string, data []byte, age time.Duration) string {
	t.Helper()
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Now().Add(-age)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestScanRepository(t *testing.T) {
	dir := t.TempDir()
	for _, rel := range []string{
		"karate/1/model.onnx", "karate/2/model.onnx", "karate/10/model.onnx",
		"karate/01/model.onnx",     // leading zero: skipped
		"karate/0/model.onnx",      // not positive: skipped
		"karate/x/model.onnx",      // not a number: skipped
		"karate/.3.tmp/model.onnx", // staging: ignored
		"karate/4/other.onnx",      // no model.onnx: not a version yet
		"cora/7/model.onnx",        //
		".staging/1/model.onnx",    // hidden model: ignored
		"bad name/1/model.onnx",    // invalid name: skipped
		"karate/3/.model.onnx.tmp", // half-published file: not a version yet
	} {
		writeFile(t, dir, rel, []byte("x"), time.Hour)
	}
	writeFile(t, dir, "karate/version_policy", []byte("latest:2\n"), time.Hour)
	writeFile(t, dir, "README", []byte("hi"), time.Hour)

	models, skipped, err := scanRepository(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range models {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"cora", "karate"}) {
		t.Fatalf("models %v, want [cora karate]", names)
	}
	k := models["karate"]
	var vs []int64
	for v := range k.versions {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	if !slices.Equal(vs, []int64{1, 2, 10}) {
		t.Errorf("karate versions %v, want [1 2 10]", vs)
	}
	if !k.hasPolicy || k.policy != "latest:2\n" {
		t.Errorf("karate policy %q (present %v), want latest:2", k.policy, k.hasPolicy)
	}
	if got := k.versions[10].path; got != filepath.Join(dir, "karate/10/model.onnx") {
		t.Errorf("version 10 path %s", got)
	}
	for _, rel := range []string{"karate/01", "karate/0", "karate/x", "bad name", "README"} {
		if _, ok := skipped[filepath.Join(dir, rel)]; !ok {
			t.Errorf("%s not reported as skipped (skipped: %v)", rel, skipped)
		}
	}
	if len(skipped) != 5 {
		t.Errorf("skipped %v, want exactly 5 entries", skipped)
	}

	if _, _, err := scanRepository(filepath.Join(dir, "missing")); err == nil {
		t.Error("scan of a missing directory: no error")
	}
}

func TestReadStable(t *testing.T) {
	dir := t.TempDir()
	old := writeFile(t, dir, "old", []byte("hello"), time.Hour)
	data, st, sum, err := readStable(old, time.Second, time.Now())
	if err != nil || string(data) != "hello" || st.size != 5 {
		t.Fatalf("readStable(old) = %q, %+v, %v", data, st, err)
	}
	if sum != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Errorf("sha256 %s", sum)
	}

	young := writeFile(t, dir, "young", []byte("half"), 0)
	_, _, _, err = readStable(young, time.Second, time.Now())
	var changing *errChanging
	if !errors.As(err, &changing) {
		t.Fatalf("readStable(young) = %v, want errChanging", err)
	}
	if d := time.Until(changing.due); d <= 0 || d > time.Second {
		t.Errorf("due in %s, want within (0, 1s]", d)
	}
	if _, _, _, err := readStable(young, 0, time.Now()); err != nil {
		t.Errorf("readStable(young, minAge 0): %v", err)
	}
	if _, _, _, err := readStable(filepath.Join(dir, "none"), 0, time.Now()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readStable(missing) = %v, want ErrNotExist", err)
	}
}

func TestCheckModelName(t *testing.T) {
	for name, ok := range map[string]bool{"karate": true, "gcn-karate_v2.1": true, "K9": true,
		"": false, "-x": false, ".x": false, "a b": false, "a/b": false, "ü": false, string(make([]byte, 129)): false} {
		if err := checkModelName(name); (err == nil) != ok {
			t.Errorf("checkModelName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
