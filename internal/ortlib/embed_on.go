//go:build ortembed

package ortlib

import _ "embed"

// embedded is the ONNX Runtime library copied here by scripts/embed_ort.sh
// (git-ignored) after checking its sha256.
//
//go:embed libonnxruntime.so
var embedded []byte
