package gcnerr

import (
	"strings"
	"testing"
)

func TestEcho(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	tests := []struct {
		name, in, want string
	}{
		{"short", "karate", `"karate"`},
		{"control characters quoted", "a\nb", `"a\nb"`},
		{"exactly MaxEcho", strings.Repeat("b", MaxEcho), `"` + strings.Repeat("b", MaxEcho) + `"`},
		{"1 MiB", long, `"` + strings.Repeat("a", MaxEcho) + `"... (1048576 bytes)`},
		// A 3-byte character straddling the cut is left out whole.
		{"cut at a character boundary", strings.Repeat("x", MaxEcho-1) + "€€", `"` + strings.Repeat("x", MaxEcho-1) + `"... (261 bytes)`},
	}
	for _, tt := range tests {
		if got := Echo(tt.in); got != tt.want {
			t.Errorf("%s: Echo = %.80q (%d bytes), want %.80q", tt.name, got, len(got), tt.want)
		}
	}
}

func TestClip(t *testing.T) {
	if got := Clip("short message"); got != "short message" {
		t.Errorf("Clip(short) = %q, want it unchanged", got)
	}
	got := Clip(strings.Repeat("m", 1<<20))
	if len(got) > maxMessage+64 || !strings.HasSuffix(got, "... (message of 1048576 bytes cut)") {
		t.Errorf("Clip(1 MiB) = %d bytes ending %q, want at most %d ending with the full length", len(got), got[max(0, len(got)-40):], maxMessage+64)
	}
}
