package version

import (
	"runtime"
	"strings"
	"testing"

	"github.com/gcnserve/gcnserve/internal/ortlib"
)

func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" {
		t.Error("empty Version")
	}
	if i.GoVersion != runtime.Version() || i.ORTVersion != ortlib.Version || i.ORTEmbedded != ortlib.Embedded() {
		t.Errorf("Get() = %+v; want Go %s, ORT %s, embedded %v", i, runtime.Version(), ortlib.Version, ortlib.Embedded())
	}
}

func TestStringSaysEmbedded(t *testing.T) {
	for _, tc := range []struct {
		embedded bool
		want     string
	}{{true, "onnxruntime 1.29.0 embedded)"}, {false, "onnxruntime 1.29.0 not embedded"}} {
		s := Info{Version: "v1.2.3", GoVersion: "go1.26.8", ORTVersion: "1.29.0", ORTEmbedded: tc.embedded}.String()
		if !strings.HasPrefix(s, "gcnserve v1.2.3 (go1.26.8 ") || !strings.Contains(s, tc.want) {
			t.Errorf("embedded=%v: String() = %q, want prefix %q and %q", tc.embedded, s, "gcnserve v1.2.3 (go1.26.8 ", tc.want)
		}
	}
}
