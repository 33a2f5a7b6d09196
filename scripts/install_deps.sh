#!/usr/bin/env bash
# install_deps.sh installs, from Debian's archive, what gcnserve's tests and
# benchmarks need beyond Go: protoc for the generated-code check, python3 with
# torch, onnx and networkx for the export script and the parity and accuracy
# tests, grpcio for the Python reference server of `make bench`, promtool (package
# prometheus) for the alert rules' checks, and protoc's gRPC Python plugin
# (package protobuf-compiler-grpc) for the Open Inference Protocol client
# tests (test/oip), which generate their stubs from the specification's proto.
# It does nothing when everything is present (checked quickly first).
set -euo pipefail

PACKAGES=(ca-certificates curl make gcc libc6-dev protobuf-compiler
  python3 python3-numpy python3-torch python3-onnx python3-networkx
  python3-grpcio python3-protobuf prometheus protobuf-compiler-grpc)

have_all() {
  command -v protoc >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1 &&
    command -v curl >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 &&
    command -v grpc_python_plugin >/dev/null 2>&1 &&
    /usr/bin/python3 -c 'import torch, onnx, networkx, numpy, grpc, google.protobuf' >/dev/null 2>&1
}

if have_all; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_deps: no apt-get; install these Debian packages' equivalents by hand: ${PACKAGES[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install_deps: need root or sudo for apt-get" >&2; exit 1; }
  sudo="sudo"
fi
echo "install_deps: installing ${PACKAGES[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
have_all || { echo "install_deps: packages installed but imports still fail" >&2; exit 1; }
