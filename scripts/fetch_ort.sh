#!/usr/bin/env bash
# fetch_ort.sh downloads Microsoft's official ONNX Runtime shared library for
# linux/x64, as shipped inside the onnxruntime-node npm package, verifies it and
# caches it under .ort/ (git-ignored). Idempotent: a verified cached copy is kept.
#
# The version pairs with github.com/yalue/onnxruntime_go in go.mod
# (onnxruntime_go v1.35.0 <-> ONNX Runtime 1.29). Change both together, and
# the two checksums below.
set -euo pipefail

ORT_VERSION=1.29.0
TARBALL_SHA256=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
LIB_SHA256=89688f5cf51c7e31befbb7b9101bc027799009b18d1baa9a5b1146a72e69538d
LIB_IN_TARBALL=package/bin/napi-v6/linux/x64/libonnxruntime.so.1

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.ort/$ORT_VERSION"
lib="$dest/libonnxruntime.so"

if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  echo "fetch_ort: only linux/x86_64 is fetched automatically; set GCNSERVE_ORT_LIB to your libonnxruntime" >&2
  exit 1
fi

if [ -f "$lib" ] && echo "$LIB_SHA256  $lib" | sha256sum -c --status; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
url="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-$ORT_VERSION.tgz"
echo "fetch_ort: downloading onnxruntime-node@$ORT_VERSION (112 MB, once)" >&2
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp/ort.tgz" "$url"
else
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null && mv onnxruntime-node-$ORT_VERSION.tgz ort.tgz)
fi
echo "$TARBALL_SHA256  $tmp/ort.tgz" | sha256sum -c --status || {
  echo "fetch_ort: checksum mismatch for $url" >&2; exit 1; }
tar -xzf "$tmp/ort.tgz" -C "$tmp" "$LIB_IN_TARBALL"
echo "$LIB_SHA256  $tmp/$LIB_IN_TARBALL" | sha256sum -c --status || {
  echo "fetch_ort: checksum mismatch for $LIB_IN_TARBALL" >&2; exit 1; }
mkdir -p "$dest"
mv "$tmp/$LIB_IN_TARBALL" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "fetch_ort: $lib" >&2
