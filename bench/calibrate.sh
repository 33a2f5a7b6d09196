#!/usr/bin/env bash
# bench/calibrate.sh measures the memory one request costs gcnserve, one
# request at a time, for each bench payload, and prints it beside
# serving.Cost's estimate (a markdown table for docs/BENCHMARKS.md):
# a fresh server per payload, VmRSS once SERVING (idle), then requests at
# c=1 for a few seconds, then VmHWM. Run after bench/run.sh (it reuses the
# models and payloads in .cache/bench).
#
#   bench/calibrate.sh [--portable]    # --portable: the ONNX Runtime path
#   GCNSERVE_ENV="GOGC=30" bench/calibrate.sh   # with an environment for the server
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/bench
PORTABLE=0
[ "${1:-}" = --portable ] && PORTABLE=1
go build -o bin/costof ./bench/costof

free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "| payload | nodes | edges | F | request MB | idle RSS MB | peak RSS over idle MB | serving.Cost MB | Cost / measured |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for spec in "karate 34 78 34 model/karate.onnx" "medium 2708 10556 32 $CACHE/gcn-random-f32-c7.onnx" \
  "cora 2708 5278 1433 $CACHE/gcn-random-f1433-c7.onnx" "large 100000 500000 16 $CACHE/gcn-random-f16-c7.onnx"; do
  read -r name nodes edges features model <<<"$spec"
  payload=$CACHE/payload-$name.pb
  if [ ! -f "$model" ]; then
    /usr/bin/python3 scripts/export_onnx.py --random-init --features "$features" --classes 7 --hidden 16 --out "$model" >/dev/null
  fi
  [ -f "$payload" ] || bin/loadgen --nodes "$nodes" --edges "$edges" --features "$features" --seed 1 --write-payload "$payload"
  if [ "$PORTABLE" = 1 ]; then
    m=$(basename "$model" .onnx | sed 's/^gcn-random-//; s/-c7$//')
    portable=$CACHE/portable-$m.onnx
    if [ ! -f "$portable" ] || [ "$model" -nt "$portable" ]; then
      /usr/bin/python3 - "$model" "$portable" <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
kept = [p for p in m.metadata_props if p.key != "layers"]
del m.metadata_props[:]
m.metadata_props.extend(kept)
onnx.save(m, sys.argv[2])
PY
    fi
    model=$portable
  fi
  port=$(free_port)
  env ${GCNSERVE_ENV:-} bin/gcnserve --addr "127.0.0.1:$port" --model "$model" --max-request-bytes $((64 << 20)) \
    >"$CACHE/calibrate-$name.log" 2>&1 &
  pid=$!
  bin/loadgen --addr "127.0.0.1:$port" --wait-serving 60s >/dev/null
  idle=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  bin/loadgen --addr "127.0.0.1:$port" --payload "$payload" --concurrency 1 --warmup 0s --duration 5s >/dev/null
  peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  bytes=$(stat -c %s "$payload")
  cost=$(bin/costof --wire "$bytes" --nodes "$nodes" --edges "$edges" --features "$features" --classes $([ "$name" = karate ] && echo 2 || echo 7) $([ "$PORTABLE" = 1 ] && echo --ort))
  awk -v n="$name" -v N="$nodes" -v E="$edges" -v F="$features" -v b="$bytes" -v i="$idle" -v p="$peak" -v c="$cost" 'BEGIN {
    over = (p - i) / 1024; cmb = c / 1048576
    printf "| %s | %d | %d | %d | %.2f | %.0f | %.1f | %.1f | %.2f |\n", n, N, E, F, b / 1e6, i / 1024, over, cmb, (over > 0 ? cmb / over : 0) }'
done
