#!/usr/bin/python3
"""Writes docs/BENCHMARKS.md from bench/run.sh's results.

    bench/report.py --results .cache/bench/results.jsonl --meta .cache/bench/meta.env --out docs/BENCHMARKS.md

results.jsonl holds one cmd/loadgen --json line per run, labelled
"<payload> <server> c=<concurrency>"; meta.env holds key=value lines about
the machine and the run.
"""

import argparse
import json
import os
import statistics

SERVER_ORDER = ["python", "gcnserve", "gcnserve-batch", "gcnserve-nobatch", "gcnserve-ort", "null"]
SERVER_NAMES = {
    "python": "Python (grpcio + PyTorch)",
    "gcnserve": "gcnserve (native)",
    "gcnserve-batch": "gcnserve --batch=true",
    "gcnserve-nobatch": "gcnserve --batch=false",
    "gcnserve-ort": "gcnserve, ONNX Runtime (--portable model)",
    "null": "null (Go, no inference)",
}
PAYLOAD_NOTES = {
    "karate": "the trained karate model ({karate_model})",
    "medium": "a random-init model (scripts/export_onnx.py --random-init --features 32 --classes 7 --hidden 16)",
    "cora": "a random-init model, Cora's shape (--features 1433 --classes 7 --hidden 16); dense features",
    "large": "a random-init model (--features 16 --classes 7 --hidden 16)",
}


def over_idle(r):
    """Peak RSS over the freshly started server's RSS, MB (None if not sampled)."""
    idle = r.get("server_idle_rss_mb")
    if idle is None or r["server_peak_rss_mb"] <= 0:
        return None
    return r["server_peak_rss_mb"] - idle


def load(results_path, meta_path):
    runs = []
    with open(results_path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                payload, server, conc = r["label"].split()
                r["payload"], r["server"] = payload, server
                runs.append(r)
    meta = {}
    with open(meta_path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    return runs, meta


def fmt(v, digits=None):
    if v is None or v < 0:
        return "n/a"
    if digits is None:
        digits = 0 if v >= 100 else 1 if v >= 10 else 2 if v >= 1 else 3
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or a <= 0 or b <= 0:
        return "n/a"
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def cores(r):
    """CPU cores the server and the load generator kept busy during the run."""
    if r["server_cpu_ms_per_req"] < 0:
        return "n/a"
    server = r["server_cpu_ms_per_req"] * r["rps"] / 1000
    client = r["client_cpu_ms_per_req"] * r["rps"] / 1000
    other = max(r.get("machine_busy_cores", 0) - server - client, 0)
    return f"{server:.2f} + {client:.2f} + {other:.2f}"


def errors(r):
    return ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "0"


def warmups(runs):
    seen = {}
    for r in runs:
        seen.setdefault(r["payload"], r.get("warmup", "?"))
    return seen.items()


def render(runs, meta):
    quick = meta.get("quick") == "1"
    command = "BENCH_QUICK=1 make bench" if quick else "make bench"
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("gcnserve against the service it replaces, a Python gRPC server (grpcio's")
    w("ThreadPoolExecutor, PyTorch 1.13 sparse aggregation, the same weights and")
    w("math: `bench/pyserver.py`), and against a Go server that decodes the request")
    w("with the generated protobuf code and answers 0.5 for every node without running")
    w("a model (`cmd/nullserver`): what any Go server built on the generated code pays")
    w("for gRPC and decoding before inference starts. gcnserve decodes requests with its")
    w("own decoder (`internal/graphwire`), so it can come in under the null server.")
    w("")
    w(f"Produced by `{command}` (`bench/run.sh`) on {meta['date']}. "
      + ("**Quick run** (BENCH_QUICK=1): short measurements, fewer configurations; "
         "read the ratios, not the third digit. " if quick else "")
      + "Warm-up before each run: " + ", ".join(f"{p} {w}" for p, w in warmups(runs)) + ".")
    if meta.get("note"):
        w("")
        w(f"**Note:** {meta['note']}")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {meta['cpu']}, {meta['nproc']} cores (`nproc`), {meta['mem']} RAM, Linux {meta['kernel']}")
    w(f"- Load average before the run: {meta.get('loadavg_start', 'n/a')}; after: {meta.get('loadavg', 'n/a')}")
    w(f"- Go {meta['go'].removeprefix('go')}, ONNX Runtime {meta['ort']}; "
      f"{meta.get('python_stack') or 'Python server not run'}")
    w("")
    w("## How it is measured")
    w("")
    w("- Every row is a fresh server process on a free loopback port: started, waited")
    w("  for (health SERVING for the Go servers, the \"ready\" line for Python), checked,")
    w("  warmed up, then loaded for a fixed time. Server and client share the machine.")
    w("- `cmd/loadgen` is closed-loop: `c` workers, one connection each, each sending")
    w("  its next request when the previous answer arrives. It marshals the request")
    w("  once and sends the same bytes on every call through a pass-through codec named")
    w("  \"proto\" (the server sees an ordinary `application/grpc+proto` call), and counts")
    w("  response bytes without decoding them, so the client's cost stays small; its own")
    w("  CPU per request is in the table, to show when it is not.")
    w("- Server CPU per request = the server's utime+stime (`/proc/<pid>/stat`, all")
    w("  threads) over the measured window / OK responses. Peak RSS = `VmHWM` at the end;")
    w("  \"over idle\" subtracts the server's `VmRSS` once it is SERVING (model loaded and")
    w("  warmed up), before the first request: the memory the requests cost.")
    w("  p50/p99 are client-observed latencies. rps = OK responses / measured seconds.")
    w("- Payloads are `graphwire.SyntheticGraph(nodes, edges, features, seed 1)`,")
    w("  serialized once to `.cache/bench/payload-*.pb`. Before the load, one response")
    w("  is decoded and checked (a score in [0, 1] for every node); gcnserve's scores")
    w("  must equal Python's within 1e-4 (max difference in the last column).")
    w("- Python runs with the tutorial's 10 executor workers and torch's default thread")
    w("  count (see the Python line above); gcnserve with `--intra-op-threads 1`.")
    w("- \"cores busy\" splits the machine's average busy cores during the run (`/proc/stat`)")
    w("  into the server, the load generator, and everything else (other processes on a")
    w("  shared machine). When the sum nears the core count, the machine, not the server,")
    w("  caps rps, and the loadgen's share is CPU the server could not use. CPU per")
    w("  request is the figure least disturbed by that; compare it first.")
    w("- Why not ghz: it decodes and re-marshals the payload on every request, about one")
    w("  core of client work for a Cora-sized request, which hides the server (38 rps with")
    w("  this load generator vs 7 with ghz, same no-inference server).")
    w("")
    w("The servers, as `bench/run.sh` starts them (P: a free port, M: the payload's model):")
    w("")
    w("```")
    w("/usr/bin/python3 bench/pyserver.py --model M --port P      # 127.0.0.1, 10 workers")
    w("bin/gcnserve --addr 127.0.0.1:P --model M --max-request-bytes 67108864 \\")
    w("  --intra-op-threads 1 --debug-addr 127.0.0.1:D            # + --batch=true / --batch=false rows")
    w("# gcnserve-ort rows: M exported without the \"layers\" metadata (--portable), so")
    w("# ONNX Runtime runs the whole graph: the path before native execution.")
    w("bin/nullserver --addr 127.0.0.1:P --max-request-bytes 67108864")
    w("```")
    w("")
    w("One row by hand (server already running; its pid for the CPU and RSS columns):")
    w("")
    w("```")
    w("go build -o bin/loadgen ./cmd/loadgen")
    w("bin/loadgen --addr 127.0.0.1:9999 --nodes 2708 --edges 10556 --features 32 \\")
    w("  --concurrency 4 --warmup 3s --duration 10s --pid $(pgrep -n gcnserve)")
    w("```")
    w("")

    payloads = []
    for r in runs:
        if r["payload"] not in payloads:
            payloads.append(r["payload"])

    def find(payload, server, conc):
        for r in runs:
            if r["payload"] == payload and r["server"] == server and r["concurrency"] == conc:
                return r
        return None

    w("## Summary")
    w("")
    w("| payload | c | CPU/request, Python / gcnserve | p50, Python / gcnserve | peak RSS, Python / gcnserve | rps, gcnserve / Python | CPU/request, gcnserve / null | CPU/request, ORT path / native |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in payloads:
        concs = sorted({r["concurrency"] for r in runs if r["payload"] == p})
        for c in concs:
            py, go, null = find(p, "python", c), find(p, "gcnserve", c), find(p, "null", c)
            ort = find(p, "gcnserve-ort", c)
            if go is None:
                continue
            get = lambda r, k: r[k] if r else None
            w(f"| {p} | {c} | {ratio(get(py, 'server_cpu_ms_per_req'), go['server_cpu_ms_per_req'])} "
              f"| {ratio(get(py, 'p50_ms'), go['p50_ms'])} "
              f"| {ratio(get(py, 'server_peak_rss_mb'), go['server_peak_rss_mb'])} "
              f"| {ratio(go['rps'], get(py, 'rps'))} "
              f"| {ratio(go['server_cpu_ms_per_req'], get(null, 'server_cpu_ms_per_req'))} "
              f"| {ratio(get(ort, 'server_cpu_ms_per_req'), go['server_cpu_ms_per_req'])} |")
    w("")
    for p in payloads:
        for c in sorted({r["concurrency"] for r in runs if r["payload"] == p}):
            on, off = find(p, "gcnserve-batch", c), find(p, "gcnserve-nobatch", c)
            if on and off:
                w(f"Dynamic batching, {p} at c={c}: server CPU per request {ratio(off['server_cpu_ms_per_req'], on['server_cpu_ms_per_req'])} "
                  f"lower with batching ({off['server_cpu_ms_per_req']:.3g} -> {on['server_cpu_ms_per_req']:.3g} ms), "
                  f"rps {ratio(on['rps'], off['rps'])} ({off['rps']:,.0f} -> {on['rps']:,.0f}).")
                w("")
    if meta.get("start_ms"):
        times = [int(t) for t in meta["start_ms"].split()]
        w(f"gcnserve start to SERVING with the bundled model/karate.onnx (process start until")
        w(f"grpc.health.v1 first answers SERVING, polled every 2 ms): median "
          f"{statistics.median(times):.0f} ms over {len(times)} start(s) ({', '.join(map(str, times))} ms).")
        w("")

    for p in payloads:
        rows = [r for r in runs if r["payload"] == p]
        first = rows[0]
        w(f"## {p}: {first['nodes']:,} nodes, {first['edges']:,} edges, {first['features']:,} features")
        w("")
        size = first["request_bytes"]
        size = f"{size / 1e6:.3g} MB" if size >= 1e6 else f"{size / 1e3:.3g} kB"
        w(f"Request {size}; model: {PAYLOAD_NOTES.get(p, 'see bench/run.sh').format(karate_model=meta.get('karate_model', 'model/karate.onnx'))}.")
        w("")
        w("| server | c | rps | p50 ms | p99 ms | server CPU ms/request | server peak RSS MB | peak RSS over idle MB | loadgen CPU ms/request | cores busy: server + loadgen + other | OK | errors | score diff vs Python |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        rows.sort(key=lambda r: (r["concurrency"], SERVER_ORDER.index(r["server"])))
        for r in rows:
            diff = r.get("score_max_diff", -1)
            w(f"| {SERVER_NAMES.get(r['server'], r['server'])} | {r['concurrency']} | {fmt(r['rps'])} "
              f"| {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['server_cpu_ms_per_req'])} "
              f"| {fmt(r['server_peak_rss_mb'], 0)} | {fmt(over_idle(r), 0)} | {fmt(r['client_cpu_ms_per_req'])} | {cores(r)} | {r['ok']} | {errors(r)} "
              f"| {'%.1g' % diff if diff >= 0 else ''} |")
        w("")
    profiles = [(k, meta.get(f"profile_{k}")) for k in ("gcnserve-ort", "gcnserve")]
    if any(path and os.path.exists(path) for _, path in profiles):
        w("## Profile: large at c=1, top functions by CPU")
        w("")
        w("`go tool pprof -top` of a CPU profile taken from the server's /debug/pprof during the")
        w("measured window: before (ONNX Runtime runs the graph: the --portable model) and after")
        w("(native execution). Functions inside ONNX Runtime show as the cgo call or the library.")
        w("")
        for kind, path in profiles:
            if not path or not os.path.exists(path):
                continue
            with open(path) as f:
                lines = [line.rstrip() for line in f]
            # Keep the header's totals line and the table.
            start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("flat")), 0)
            total = next((line for line in lines if "samples" in line), "")
            w(f"{'Before' if kind == 'gcnserve-ort' else 'After'}: {SERVER_NAMES[kind]}. {total.strip()}")
            w("")
            w("```")
            w("\n".join(lines[start:start + 16]))
            w("```")
            w("")
    w(f"Whole run: {meta['elapsed_s']} s. Raw results: `.cache/bench/results.jsonl` (one `loadgen --json` line per row).")
    return "\n".join(out) + "\n"


KEEP_MARKER = "<!-- not written by make bench: kept as is by bench/report.py -->"


def main():
    parser = argparse.ArgumentParser(description="Write docs/BENCHMARKS.md from bench/run.sh's results.")
    parser.add_argument("--results", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs, meta = load(args.results, args.meta)
    text = render(runs, meta)
    # Sections below KEEP_MARKER come from other benchmarks (bench/inprocess):
    # a new make bench report keeps them.
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = f.read()
        if KEEP_MARKER in old:
            text += "\n" + old[old.index(KEEP_MARKER):]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
