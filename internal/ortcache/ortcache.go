// Package ortcache names where scripts/fetch_ort.sh keeps the ONNX Runtime
// library: once per user, not once per clone, since the download is 112 MB.
package ortcache

import (
	"os"
	"path/filepath"
)

// Version is the ONNX Runtime release scripts/fetch_ort.sh installs and
// github.com/yalue/onnxruntime_go in go.mod is built for. Change it together
// with ORT_VERSION and the checksums in that script.
const Version = "1.29.0"

// Library returns the path of the cached library,
// ${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/ort/<Version>/libonnxruntime.so
// (the same rule as the script's), whether or not it exists yet. It fails
// only when neither variable is set.
func Library() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "gcnserve", "ort", Version, "libonnxruntime.so"), nil
}
