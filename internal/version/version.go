// Package version says what this binary is: the gcnserve version, the Go
// toolchain, the ONNX Runtime release and whether that library is embedded.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/gcnserve/gcnserve/internal/ortlib"
)

// version is set at link time by 'make build':
// -ldflags "-X github.com/gcnserve/gcnserve/internal/version.version=$(git describe)".
var version string

// Info describes the running binary.
type Info struct {
	// Version is the gcnserve version: the link-time value, else the module
	// version or VCS revision from the build info, else "devel".
	Version string
	// GoVersion is the toolchain that built the binary, e.g. "go1.26.8".
	GoVersion string
	// ORTVersion is the ONNX Runtime release the binary is built for.
	ORTVersion string
	// ORTEmbedded says whether the library is inside the binary (-tags ortembed).
	ORTEmbedded bool
}

// Get returns the running binary's Info.
func Get() Info {
	return Info{Version: gcnserveVersion(), GoVersion: runtime.Version(), ORTVersion: ortlib.Version, ORTEmbedded: ortlib.Embedded()}
}

// String is the one line `gcnserve --version` prints, e.g.
// "gcnserve v0.3.0 (go1.26.8 linux/amd64, onnxruntime 1.29.0 embedded)".
func (i Info) String() string {
	ort := "onnxruntime " + i.ORTVersion
	if i.ORTEmbedded {
		ort += " embedded"
	} else {
		ort += " not embedded (--ort-lib, GCNSERVE_ORT_LIB, the user cache or the system's)"
	}
	return fmt.Sprintf("gcnserve %s (%s %s/%s, %s)", i.Version, i.GoVersion, runtime.GOOS, runtime.GOARCH, ort)
}

func gcnserveVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "devel-" + rev + dirty
	}
	return "devel"
}
