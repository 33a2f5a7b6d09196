package ortlib

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFetchScriptAgrees: scripts/fetch_ort.sh installs the Version and
// checksum this package names, at the path CachePath returns.
func TestFetchScriptAgrees(t *testing.T) {
	script := filepath.Join("..", "..", "scripts", "fetch_ort.sh")
	text, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"ORT_VERSION": Version, "LIB_SHA256": SHA256} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(text)
		if m == nil || string(m[1]) != want {
			t.Errorf("fetch_ort.sh %s: got %q, want %q", name, m, want)
		}
	}
	for _, xdg := range []string{t.TempDir(), ""} {
		t.Setenv("XDG_CACHE_HOME", xdg)
		out, err := exec.Command("bash", script, "--print-path").Output()
		if err != nil {
			t.Fatalf("fetch_ort.sh --print-path: %v", err)
		}
		if got, want := strings.TrimSpace(string(out)), CachePath(); got != want {
			t.Errorf("XDG_CACHE_HOME=%q: fetch_ort.sh --print-path %q, CachePath %q", xdg, got, want)
		}
	}
}
