package ortcache

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestLibraryFollowsXDG(t *testing.T) {
	for _, tc := range []struct{ xdg, home, want string }{
		{"/xdg", "/home/u", "/xdg/gcnserve/ort/" + Version + "/libonnxruntime.so"},
		{"", "/home/u", "/home/u/.cache/gcnserve/ort/" + Version + "/libonnxruntime.so"},
	} {
		t.Setenv("XDG_CACHE_HOME", tc.xdg)
		t.Setenv("HOME", tc.home)
		got, err := Library()
		if err != nil || got != tc.want {
			t.Errorf("XDG_CACHE_HOME=%q HOME=%q: got %q, %v; want %q", tc.xdg, tc.home, got, err, tc.want)
		}
	}
}

// TestScriptAgrees: scripts/fetch_ort.sh installs the Version this package
// names, at the path Library returns.
func TestScriptAgrees(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "scripts", "fetch_ort.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ORT_VERSION=(\S+)$`).FindSubmatch(script)
	if m == nil || string(m[1]) != Version {
		t.Fatalf("fetch_ort.sh ORT_VERSION: got %q, want %q", m, Version)
	}
	xdg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", xdg)
	out, err := exec.Command("bash", filepath.Join("..", "..", "scripts", "fetch_ort.sh"), "--print-path").Output()
	if err != nil {
		t.Fatalf("fetch_ort.sh --print-path: %v", err)
	}
	want, _ := Library()
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("fetch_ort.sh --print-path: got %q, want %q", got, want)
	}
}
