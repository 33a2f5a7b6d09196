#!/usr/bin/env bash
# embed_ort.sh copies the sha256-verified ONNX Runtime library into
# internal/ortlib/ (git-ignored) for 'go build -tags ortembed'. It takes the
# per-user cache (${XDG_CACHE_HOME:-~/.cache}/gcnserve/ort/) or .ort/ that
# scripts/fetch_ort.sh fills, and refuses a library with another checksum.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^const Version = "\(.*\)"/\1/p' "$root/internal/ortlib/ortlib.go")
sum=$(sed -n 's/^const SHA256 = "\(.*\)"/\1/p' "$root/internal/ortlib/ortlib.go")
dest="$root/internal/ortlib/libonnxruntime.so"

if [ -f "$dest" ] && echo "$sum  $dest" | sha256sum -c --status; then
  exit 0
fi
for src in "${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/ort/$version/libonnxruntime.so" "$root/.ort/$version/libonnxruntime.so"; do
  if [ -f "$src" ] && echo "$sum  $src" | sha256sum -c --status; then
    # A private temporary name: concurrent 'make build's (parallel test
    # packages) each rename a complete copy into place.
    cp "$src" "$dest.$$"
    mv "$dest.$$" "$dest"
    exit 0
  fi
done
echo "embed_ort: no verified libonnxruntime.so $version in the cache or .ort/ (run scripts/fetch_ort.sh)" >&2
exit 1
