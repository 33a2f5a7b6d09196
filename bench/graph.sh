#!/usr/bin/env bash
# bench/graph.sh is `make bench-graph`: stored graphs on one machine. It
# makes a random-init model of 16 features with receptive_field = 2
# (scripts/export_onnx.py, plus that metadata key when the export does not
# write it yet), starts bin/gcnserve with a --graph-store in a temporary
# directory, and runs the load program bench/graph (100k nodes, 500k edges,
# 16 features; scores of 10 random nodes; deltas of 100 edge changes while
# 8 clients score), twice: recompute mode (--graph-incremental=false), then
# incremental mode (the default), then a speed-up line. Its last line (the
# incremental run's):
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

# run_mode FLAG OUT: one server with --graph-incremental=FLAG on a fresh
# store, the load program against it, its output in OUT.
run_mode() {
  local port
  port=$($PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$tmp/store"
  bin/gcnserve --addr "127.0.0.1:$port" --model "$tmp/m.onnx" --graph-store "$tmp/store" \
    --graph-incremental="$1" --max-request-bytes 268435456 --log-level warn 2>"$tmp/server-$1.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if $PYTHON -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then break; fi
    sleep 0.1
  done
  sleep 0.5
  "$tmp/graphbench" --addr "127.0.0.1:$port" --pid "$SERVER_PID" ${BENCH_GRAPH_ARGS:-} >"$2"
  STORE_SIZE=$(du -sh "$tmp/store" | cut -f1)
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
# Recompute first (--graph-incremental=false: each score runs the model on
# the asked nodes' receptive field), then the default incremental mode
# (per-layer state kept current by every delta); the last line is the
# default mode's.
for mode in false true; do
  if [ "$mode" = false ]; then echo "== recompute (--graph-incremental=false)"; else echo "== incremental (default)"; fi
  run_mode "$mode" "$tmp/out-$mode"
  head -n -1 "$tmp/out-$mode"
  echo "store on disk after the run: $STORE_SIZE (--graph-store, bbolt, fsync per delta)"
  tail -n 1 "$tmp/out-$mode"
done
"$PYTHON" - "$tmp/out-false" "$tmp/out-true" <<'PY'
import sys
def last(p):
    line = open(p).read().strip().splitlines()[-1]
    return dict(kv.split("=") for kv in line.split(": ", 1)[1].split())
r, i = last(sys.argv[1]), last(sys.argv[2])
f = lambda d, k: float(d[k])
print("speed-up of incremental over recompute: score p50 %.1fx (%.3f -> %.3f ms), score server CPU %.1fx (%.4f -> %.4f of a full ProcessGraph), deltas/s %.2fx (%.0f -> %.0f)" % (
    f(r, "score_p50_ms") / max(f(i, "score_p50_ms"), 1e-9), f(r, "score_p50_ms"), f(i, "score_p50_ms"),
    f(r, "score_cpu_vs_full") / max(f(i, "score_cpu_vs_full"), 1e-9), f(r, "score_cpu_vs_full"), f(i, "score_cpu_vs_full"),
    f(i, "deltas_per_s") / max(f(r, "deltas_per_s"), 1e-9), f(r, "deltas_per_s"), f(i, "deltas_per_s")))
PY
tail -n 1 "$tmp/out-true"
