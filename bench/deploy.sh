#!/usr/bin/env bash
# deploy.sh measures the deployment figures docs/BENCHMARKS.md quotes:
# binary size with and without the embedded ONNX Runtime, exec-to-SERVING
# time (lone binary, env -i) and the scale-out run with longer phases.
#   bench/deploy.sh               STARTUP_RUNS=20 SCALEOUT_PHASE=10s
# Prints a Markdown section on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
STARTUP_RUNS=${STARTUP_RUNS:-20}
SCALEOUT_PHASE=${SCALEOUT_PHASE:-10s}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make --no-print-directory build >/dev/null
"$GO" build -o "$tmp/gcnserve-noembed" ./cmd/server
size() { stat -c %s "$1" | awk '{printf "%.1f MB", $1/1e6}'; }
lib=internal/ortlib/libonnxruntime.so

echo "### Deployment: binary size, start-up, scale-out"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores (load average $(cut -d' ' -f1-3 /proc/loadavg) at the start: the machine is shared), $(bin/gcnserve --version)."
echo
echo "| | size |"
echo "|---|---|"
echo "| bin/gcnserve (ONNX Runtime embedded, make build) | $(size bin/gcnserve) |"
echo "| go build ./cmd/server (no embed; needs libonnxruntime.so) | $(size "$tmp/gcnserve-noembed") |"
echo "| libonnxruntime.so $(sed -n 's/^const Version = "\(.*\)"/\1/p' internal/ortlib/ortlib.go) | $(size "$lib") |"
echo

GCNSERVE_STARTUP_RUNS=$STARTUP_RUNS "$GO" test -count=1 -v -run 'TestStartupTime' ./test/single 2>&1 |
  sed -n 's/.*exec to SERVING, \(.*\)/Start-up, exec to grpc.health SERVING (karate model, warm-up run included), \1./p'
echo

GCNSERVE_SCALEOUT_PHASE=$SCALEOUT_PHASE GCNSERVE_SCALEOUT_REPORT="$tmp/scaleout.txt" \
  "$GO" test -count=1 -timeout 10m -run TestScaleOutZeroFailures ./test/scaleout >/dev/null
echo "Scale-out (test/scaleout, 8 client goroutines, round_robin over 127.0.0.2-4, phases of $SCALEOUT_PHASE):"
echo
sed 's/^/- /' "$tmp/scaleout.txt"
