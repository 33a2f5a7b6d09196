#!/usr/bin/env bash
# bench/graph.sh is `make bench-graph`: stored graphs on one machine. It
# makes a random-init model of 16 features with receptive_field = 2
# (scripts/export_onnx.py, plus that metadata key when the export does not
# write it yet), starts bin/gcnserve with a --graph-store in a temporary
# directory, and runs the load program bench/graph (100k nodes, 500k edges,
# 16 features; scores of 10 random nodes; deltas of 100 edge changes while
# 8 clients score). Its last line:
#   bench-graph: score_p50_ms=X score_cpu_vs_full=Y deltas_per_s=Z exact=true|false
#   BENCH_GRAPH_ARGS  extra flags for bench/graph (e.g. "--duration 5s")
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
GO=${GO:-go}
tmp=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PYTHON" scripts/export_onnx.py --random-init --features 16 --classes 7 --out "$tmp/m.onnx" >/dev/null
"$PYTHON" - "$tmp/m.onnx" <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
if not any(p.key == "receptive_field" for p in m.metadata_props):
    p = m.metadata_props.add(); p.key, p.value = "receptive_field", "2"
onnx.save(m, sys.argv[1])
PY
$GO build -o "$tmp/graphbench" ./bench/graph

port=$($PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin/gcnserve --addr "127.0.0.1:$port" --model "$tmp/m.onnx" --graph-store "$tmp/store" \
  --max-request-bytes 268435456 --log-level warn 2>"$tmp/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
  if $PYTHON -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then break; fi
  sleep 0.1
done
sleep 0.5
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
"$tmp/graphbench" --addr "127.0.0.1:$port" --pid "$SERVER_PID" ${BENCH_GRAPH_ARGS:-} >"$tmp/out"
head -n -1 "$tmp/out"
echo "store on disk after the run: $(du -sh "$tmp/store" | cut -f1) (--graph-store, bbolt, fsync per delta)"
tail -n 1 "$tmp/out"
