#!/usr/bin/env bash
# fetch_ort.sh downloads Microsoft's official ONNX Runtime shared library for
# linux/x64, as shipped inside the onnxruntime-node npm package, verifies it and
# caches it once per user (not per clone: it is a 112 MB download) at
#   ${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/ort/<version>/libonnxruntime.so
# where gcnserve and the tests look for it (internal/ortlib). Idempotent: a
# cached copy whose sha256 matches is kept. A copy in an old clone's .ort/ is
# reused instead of downloading again.
#
#   scripts/fetch_ort.sh               fetch (or verify) and print nothing on success
#   scripts/fetch_ort.sh --print-path  print the library's path, fetch nothing
#
# The version pairs with github.com/yalue/onnxruntime_go in go.mod
# (onnxruntime_go v1.35.0 <-> ONNX Runtime 1.29). Change both together, the
# two checksums below and internal/ortlib (Version, SHA256).
set -euo pipefail

ORT_VERSION=1.29.0
TARBALL_SHA256=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
LIB_SHA256=89688f5cf51c7e31befbb7b9101bc027799009b18d1baa9a5b1146a72e69538d
LIB_IN_TARBALL=package/bin/napi-v6/linux/x64/libonnxruntime.so.1

# The rule of Go's os.UserCacheDir on Linux: XDG_CACHE_HOME if absolute.
case "${XDG_CACHE_HOME:-}" in
  /*) cache=$XDG_CACHE_HOME ;;
  *) cache=${HOME:?fetch_ort: neither XDG_CACHE_HOME nor HOME is set}/.cache ;;
esac
dest="$cache/gcnserve/ort/$ORT_VERSION"
lib="$dest/libonnxruntime.so"

if [ "${1:-}" = "--print-path" ]; then
  echo "$lib"
  exit 0
fi

verified() { [ -f "$1" ] && echo "$LIB_SHA256  $1" | sha256sum -c --status; }

if verified "$lib"; then
  exit 0
fi

if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  echo "fetch_ort: only linux/x86_64 is fetched automatically; set GCNSERVE_ORT_LIB to your libonnxruntime" >&2
  exit 1
fi

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.fetch.XXXXXX") # same file system: the final mv is atomic
trap 'rm -rf "$tmp"' EXIT

old="$(cd "$(dirname "$0")/.." && pwd)/.ort/$ORT_VERSION/libonnxruntime.so"
if verified "$old"; then
  cp "$old" "$tmp/libonnxruntime.so"
  mv "$tmp/libonnxruntime.so" "$lib"
  echo "fetch_ort: $lib (copied from $old)" >&2
  exit 0
fi

url="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-$ORT_VERSION.tgz"
if ! command -v curl >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
  echo "fetch_ort: curl is missing (needed to download $url): run 'scripts/install_deps.sh run' or install Debian's curl" >&2
  exit 1
fi
echo "fetch_ort: downloading onnxruntime-node@$ORT_VERSION (112 MB, once per user)" >&2
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp/ort.tgz" "$url"
else
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null && mv onnxruntime-node-$ORT_VERSION.tgz ort.tgz)
fi
echo "$TARBALL_SHA256  $tmp/ort.tgz" | sha256sum -c --status || {
  echo "fetch_ort: checksum mismatch for $url" >&2; exit 1; }
tar -xzf "$tmp/ort.tgz" -C "$tmp" "$LIB_IN_TARBALL"
verified "$tmp/$LIB_IN_TARBALL" || {
  echo "fetch_ort: checksum mismatch for $LIB_IN_TARBALL" >&2; exit 1; }
mv "$tmp/$LIB_IN_TARBALL" "$lib"
echo "fetch_ort: $lib" >&2
