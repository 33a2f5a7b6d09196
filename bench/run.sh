#!/usr/bin/env bash
# bench/run.sh measures gcnserve against the Python reference server
# (bench/pyserver.py) and a no-inference Go server (cmd/nullserver, the
# transport's ceiling), and writes docs/BENCHMARKS.md. Run it as `make bench`.
#
#   BENCH_QUICK=1  short runs and fewer configurations (under 2 minutes)
#   BENCH_OUT      the report to write (default docs/BENCHMARKS.md)
#   BENCH_SERVERS  servers to run (default "python gcnserve null")
#   BENCH_NOTE     a sentence for the report (e.g. "the machine was shared")
#   BENCH_PAYLOADS payloads to run (default "karate medium cora large")
#
# gcnserve runs each model natively (its "layers" metadata); the row
# "gcnserve-ort" serves the same weights exported with --portable, so ONNX
# Runtime runs the whole graph: the path before native execution, measured
# in the same run. During large c=1 both are CPU-profiled (/debug/pprof) and
# the top functions go into the report.
#
# Every measurement starts a fresh server process on a free loopback port,
# waits for it to be ready, checks one response (gcnserve's scores must match
# Python's within 1e-4), warms up, then runs cmd/loadgen closed-loop for a
# fixed time, sampling the server's CPU time and peak RSS from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
QUICK=${BENCH_QUICK:-0}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
SERVERS=${BENCH_SERVERS:-python gcnserve null}
CACHE=.cache/bench
LOGS=$CACHE/logs
RESULTS=$CACHE/results.jsonl
META=$CACHE/meta.env

# Payloads: name nodes edges features model concurrencies duration warmup.
# The response check before each run is one request on the first
# connection, so at c=1 it is a warm-up already: a payload that takes
# seconds per request needs no more in a quick run.
# karate uses the bundled trained model; the others a random-init model of
# their feature width (7 classes, 16 hidden: Cora's shape).
if [ "$QUICK" = 1 ]; then
  PAYLOADS=(
    "karate 34 78 34 karate 16,64 3s 1s"
    "medium 2708 10556 32 f32 4 3s 1s"
    "cora 2708 5278 1433 f1433 1 3s 1s"
    "large 100000 500000 16 f16 1,2 4s 0s"
  )
  START_REPEATS=1
else
  PAYLOADS=(
    "karate 34 78 34 karate 16,64 10s 3s"
    "medium 2708 10556 32 f32 4 10s 3s"
    "cora 2708 5278 1433 f1433 1,4 10s 3s"
    "large 100000 500000 16 f16 1,2 20s 3s"
  )
  START_REPEATS=3
fi
if [ -n "${BENCH_PAYLOADS:-}" ]; then
  kept=()
  for spec in "${PAYLOADS[@]}"; do
    [[ " $BENCH_PAYLOADS " == *" ${spec%% *} "* ]] && kept+=("$spec")
  done
  PAYLOADS=("${kept[@]}")
fi

bench_start=$(date +%s)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: [$(($(date +%s) - bench_start))s] $*" >&2; }

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- build -----------------------------------------------------------------
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$LOGS" "$RESULTS" "$CACHE"/profile-*
mkdir -p "$CACHE" "$LOGS" bin
log "building"
go build -o bin/loadgen ./cmd/loadgen
go build -o bin/nullserver ./cmd/nullserver
if [[ " $SERVERS " == *" gcnserve "* ]]; then
  make --no-print-directory build >/dev/null
fi

# --- models and payloads ---------------------------------------------------
# The bundled model comes from `make models`; until it is there, a copy
# made the same way goes into the cache.
KARATE=model/karate.onnx
if [ ! -f "$KARATE" ]; then
  KARATE=$CACHE/karate.onnx
  if [ ! -f "$KARATE" ] || [ scripts/export_onnx.py -nt "$KARATE" ]; then
    log "model/karate.onnx is missing: exporting $KARATE"
    "$PYTHON" scripts/export_onnx.py --karate --out "$KARATE" >"$LOGS/export-karate.log"
  fi
fi
model_path() {
  case $1 in
    karate) echo "$KARATE" ;;
    f*) echo "$CACHE/gcn-random-$1-c7.onnx" ;;
  esac
}
# portable_path MODEL: the same weights without "layers" (ONNX Runtime only).
portable_path() { echo "$CACHE/portable-$1.onnx"; }
for spec in "${PAYLOADS[@]}"; do
  read -r name nodes edges features model _ <<<"$spec"
  path=$(model_path "$model")
  if [ "$model" != karate ] && { [ ! -f "$path" ] || [ scripts/export_onnx.py -nt "$path" ]; }; then
    log "exporting $path"
    "$PYTHON" scripts/export_onnx.py --random-init --features "$features" --classes 7 --hidden 16 \
      --out "$path" >"$LOGS/export-$model.log"
  fi
  [ -f "$path" ] || { log "missing model $path (run 'make models')"; exit 1; }
  portable=$(portable_path "$model")
  if [[ " $SERVERS " == *" gcnserve "* ]] && { [ ! -f "$portable" ] || [ "$path" -nt "$portable" ]; }; then
    # The same weights, minus the "layers" metadata.
    "$PYTHON" - "$path" "$portable" <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
kept = [p for p in m.metadata_props if p.key != "layers"]
del m.metadata_props[:]
m.metadata_props.extend(kept)
onnx.save(m, sys.argv[2])
PY
  fi
  bin/loadgen --nodes "$nodes" --edges "$edges" --features "$features" --seed 1 \
    --write-payload "$CACHE/payload-$name.pb"
done

# --- servers ---------------------------------------------------------------
# start_server KIND MODEL PORT LOG starts one server in the background and
# waits until it is ready; it sets SERVER_PID.
start_server() {
  local kind=$1 model=$2 port=$3 logfile=$4
  case $kind in
    python)
      "$PYTHON" bench/pyserver.py --model "$model" --port "$port" >"$logfile" 2>&1 &
      SERVER_PID=$!
      for _ in $(seq 600); do
        grep -q '^ready' "$logfile" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
      done
      log "python server did not start; its log:"; cat "$logfile" >&2; return 1 ;;
    gcnserve | gcnserve-batch | gcnserve-nobatch | gcnserve-ort)
      # The defaults; batching on; batching off; ONNX Runtime only.
      local batch=()
      [ "$kind" = gcnserve-batch ] && batch=(--batch=true)
      [ "$kind" = gcnserve-nobatch ] && batch=(--batch=false)
      [ "$kind" = gcnserve-ort ] && model=$(portable_path "$(basename "$model" .onnx | sed 's/^gcn-random-//; s/-c7$//')")
      DEBUG_PORT=$(free_port)
      bin/gcnserve --addr "127.0.0.1:$port" --model "$model" --max-request-bytes $((64 << 20)) \
        --intra-op-threads 1 "${batch[@]}" --debug-addr "127.0.0.1:$DEBUG_PORT" >"$logfile" 2>&1 &
      SERVER_PID=$! ;;
    null)
      bin/nullserver --addr "127.0.0.1:$port" --max-request-bytes $((64 << 20)) >"$logfile" 2>&1 &
      SERVER_PID=$! ;;
  esac
  bin/loadgen --addr "127.0.0.1:$port" --wait-serving 60s >/dev/null ||
    { log "$kind did not become SERVING; its log:"; cat "$logfile" >&2; return 1; }
}

# profile KIND PAYLOAD SECONDS: a CPU profile of the running gcnserve
# (its /debug/pprof), summarized as the top functions by flat CPU.
profile() {
  local kind=$1 payload=$2 seconds=$3
  local prof="$CACHE/profile-$payload-$kind.pb.gz"
  curl -sf -o "$prof" "http://127.0.0.1:$DEBUG_PORT/debug/pprof/profile?seconds=$seconds" || return 0
  go tool pprof -top -nodecount=15 bin/gcnserve "$prof" 2>/dev/null >"$CACHE/profile-$payload-$kind.txt" || true
}

# run_one PAYLOAD SERVER CONCURRENCY DURATION WARMUP MODEL measures one
# configuration.
run_one() {
  local payload=$1 kind=$2 conc=$3 duration=$4 warmup=$5 model=$6
  local label="$payload $kind c=$conc" port check=()
  port=$(free_port)
  log "$label"
  start_server "$kind" "$model" "$port" "$LOGS/$payload-$kind-c$conc.log"
  # Idle RSS: the freshly started server (gcnserve: model loaded, warmed up).
  local idle_kb
  idle_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
  case $kind in
    python) check=(--save-response "$CACHE/response-$payload.pb") ;;
    gcnserve*) [ -f "$CACHE/response-$payload.pb" ] && check=(--expect "$CACHE/response-$payload.pb") ;;
  esac
  local secs=${duration%s} profiling=""
  if [ "$payload" = large ] && [ "$conc" = 1 ] && [[ $kind == gcnserve || $kind == gcnserve-ort ]]; then
    # Profile the middle of the measured window.
    (sleep "${warmup%s}"; profile "$kind" "$payload" $((secs > 3 ? secs - 2 : 1))) &
    profiling=$!
  fi
  bin/loadgen --addr "127.0.0.1:$port" --payload "$CACHE/payload-$payload.pb" \
    --concurrency "$conc" --warmup "$warmup" --duration "$duration" --pid "$SERVER_PID" \
    --label "$label" --json "${check[@]}" | IDLE="$idle_kb" "$PYTHON" -c '
import json, os, sys
for line in sys.stdin:
    r = json.loads(line)
    r["server_idle_rss_mb"] = int(os.environ["IDLE"]) / 1024
    print(json.dumps(r))' >>"$RESULTS"
  if [ -n "$profiling" ]; then wait "$profiling"; fi
  cleanup
}

for spec in "${PAYLOADS[@]}"; do
  read -r name _ _ _ model concs duration warmup <<<"$spec"
  rm -f "$CACHE/response-$name.pb"
  path=$(model_path "$model")
  for conc in ${concs//,/ }; do
    kinds=$SERVERS
    # The ONNX Runtime path (portable model) beside the native one.
    [[ " $SERVERS " == *" gcnserve "* ]] && kinds="$kinds gcnserve-ort"
    if [ "$name" = karate ] && [ "$conc" = 64 ]; then
      # Batching on vs off where it should matter: many tiny graphs.
      [[ " $SERVERS " == *" gcnserve "* ]] && kinds="$kinds gcnserve-batch gcnserve-nobatch"
      # Quick runs skip the reference servers here; they add no new point.
      [ "$QUICK" = 1 ] && kinds=$(echo " $kinds " | sed 's/ python / /; s/ null / /')
    fi
    for kind in $kinds; do
      run_one "$name" "$kind" "$conc" "$duration" "$warmup" "$path"
    done
  done
done

# --- gcnserve start-up time ------------------------------------------------
START_MS=""
if [[ " $SERVERS " == *" gcnserve "* ]]; then
  for _ in $(seq "$START_REPEATS"); do
    port=$(free_port)
    t0=$(date +%s%N)
    bin/gcnserve --addr "127.0.0.1:$port" --model "$KARATE" >"$LOGS/startup.log" 2>&1 &
    SERVER_PID=$!
    t1=$(bin/loadgen --addr "127.0.0.1:$port" --wait-serving 60s)
    START_MS="$START_MS $(((t1 - t0) / 1000000))"
    cleanup
  done
  log "gcnserve start to SERVING (ms):$START_MS"
fi

# --- report ----------------------------------------------------------------
ort_version=$(grep -o 'onnxruntime=[^ ]*' "$LOGS"/*gcnserve*.log 2>/dev/null | head -1 | cut -d= -f2 || true)
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "nproc=$(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "go=$(go version | cut -d' ' -f3)"
  echo "ort=${ort_version:-unknown}"
  # pyserver's ready line names its Python, torch and grpcio (importing
  # torch again here would take seconds).
  sed -n 's/^ready: .* workers (\(.*\))$/python_stack=\1/p' "$LOGS"/*-python-*.log 2>/dev/null | head -1 || true
  echo "loadavg_start=$loadavg_start"
  echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "note=${BENCH_NOTE:-}"
  echo "karate_model=$KARATE"
  echo "quick=$QUICK"
  echo "start_ms=${START_MS# }"
  echo "elapsed_s=$(($(date +%s) - bench_start))"
  for kind in gcnserve-ort gcnserve; do
    if [ -f "$CACHE/profile-large-$kind.txt" ]; then echo "profile_$kind=$CACHE/profile-large-$kind.txt"; fi
  done
} >"$META"
"$PYTHON" bench/report.py --results "$RESULTS" --meta "$META" --out "$OUT"
log "wrote $OUT in $(($(date +%s) - bench_start))s"
