#!/usr/bin/env bash
# install_deps.sh installs, from Debian's archive, what gcnserve needs beyond
# Go (in /usr/local/go or on PATH). Two sets:
#
#   scripts/install_deps.sh run    what `make run` needs: make, curl (scripts/
#                                  fetch_ort.sh downloads ONNX Runtime), gcc and
#                                  libc6-dev (cgo: gcn binds ONNX Runtime through
#                                  onnxruntime_go; without a C compiler Go turns
#                                  cgo off and the build fails with "build
#                                  constraints exclude all Go files"),
#                                  ca-certificates for the TLS downloads.
#   scripts/install_deps.sh [test] the run set and what `make test` and .ci/run
#                                  need: git (.ci/run's clean clone), protoc for
#                                  the generated-code check, python3 with torch,
#                                  onnx and networkx for the export script and the
#                                  parity and accuracy tests, grpcio for the Python
#                                  reference server of `make bench`, promtool
#                                  (package prometheus) for the alert rules'
#                                  checks, and protoc's gRPC Python plugin
#                                  (protobuf-compiler-grpc) for test/oip.
#
# Each tool is checked first; only the packages of missing tools are installed
# (apt-get, with sudo when not root), so a machine that has everything pays one
# quick check. Where it cannot install (no apt-get, no root and no sudo) it
# names every missing tool, why it is needed and its Debian package, and fails.
set -euo pipefail

mode=${1:-test}
case "$mode" in
  run | test) ;;
  *) echo "usage: scripts/install_deps.sh [run|test]" >&2; exit 2 ;;
esac

# need NAME PACKAGES WHY: one line per requirement; has_NAME checks it.
REQS=()
need() { REQS+=("$1|$2|$3"); }
need make "make" "runs the Makefile"
need curl "curl" "scripts/fetch_ort.sh downloads ONNX Runtime"
need cacerts "ca-certificates" "TLS for the downloads (ONNX Runtime, Go modules)"
need gcc "gcc" "cgo: gcn binds ONNX Runtime through onnxruntime_go"
need libc-headers "libc6-dev" "cgo: the C library's headers"
if [ "$mode" = test ]; then
  need git "git" ".ci/run clones the commit it tests"
  need protoc "protobuf-compiler" "make check-proto regenerates gen/"
  need grpc_python_plugin "protobuf-compiler-grpc" "test/oip generates its Python stubs"
  need promtool "prometheus" "make check-alerts and the alert rules' tests"
  need python-modules "python3 python3-numpy python3-torch python3-onnx python3-networkx python3-grpcio python3-protobuf" \
    "the export script, PyTorch parity, Cora accuracy, the Python reference server"
fi

has() {
  case "$1" in
    cacerts) [ -s /etc/ssl/certs/ca-certificates.crt ] || [ -s /etc/pki/tls/certs/ca-bundle.crt ] ;;
    libc-headers) command -v gcc >/dev/null 2>&1 && printf '#include <stdlib.h>\n' | gcc -E -x c - >/dev/null 2>&1 ;;
    python-modules) /usr/bin/python3 -c 'import torch, onnx, networkx, numpy, grpc, google.protobuf' >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing() {
  local req
  for req in "${REQS[@]}"; do
    has "${req%%|*}" || echo "$req"
  done
}

list=$(missing)
[ -z "$list" ] && exit 0

packages=()
while IFS='|' read -r _ pkgs _; do
  read -r -a p <<<"$pkgs"
  packages+=("${p[@]}")
done <<<"$list"

explain() {
  echo "install_deps: $1" >&2
  while IFS='|' read -r name pkgs why; do
    printf '  %-20s %s (Debian: %s)\n' "$name" "$why" "$pkgs" >&2
  done <<<"$list"
}

if ! command -v apt-get >/dev/null 2>&1; then
  explain "missing, and no apt-get to install them: install these by hand, then run again"
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    explain "missing, and installing needs root or sudo: as root, run 'apt-get update && apt-get install -y ${packages[*]}'"
    exit 1
  fi
  sudo="sudo"
fi
explain "installing what is missing: ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
list=$(missing)
if [ -n "$list" ]; then
  explain "installed ${packages[*]}, but these are still missing"
  exit 1
fi
