#!/usr/bin/env python3
"""An Open Inference Protocol v2 REST client: plain JSON over HTTP, urllib only.

It follows specification/protocol/inference_rest.md: health, server and model
metadata, model readiness, and inference with the JSON tensor form ("data" flat,
and nested in the tensor's shape), through both the unversioned and the
versioned paths, against the scores ProcessGraph gave for the same graph (max abs
diff <= 1e-5); then errors, which must be {"error": "..."} with the spec's status.

Usage: oip_rest_client.py --url http://HOST:PORT --case CASE.json (see oip_grpc_client.py).
Exit status 0 when every check passes.
"""
import argparse
import json
import math
import sys
import urllib.error
import urllib.request

TOLERANCE = 1e-5


def call(method, url, body=None, timeout=60):
    """Return (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--case", required=True)
    args = ap.parse_args()
    with open(args.case) as f:
        case = json.load(f)
    base = args.url.rstrip("/")
    model, n, feat = case["model"], case["num_nodes"], case["feature_dim"]
    x, edges, want = case["x"], case["edge_index"], case["scores"]
    e = len(edges) // 2
    failures, count = [], 0

    def check(ok, what):
        nonlocal count
        count += 1
        if not ok:
            failures.append(what)
            print("FAIL " + what, flush=True)

    st, body = call("GET", base + "/v2/health/live")
    check(st == 200 and body.get("live") is True, "live: %s %r" % (st, body))
    st, body = call("GET", base + "/v2/health/ready")
    check(st == 200 and body.get("ready") is True, "ready: %s %r" % (st, body))
    st, body = call("GET", base + "/v2")
    check(st == 200 and body.get("name") and "version" in body and isinstance(body.get("extensions"), list),
          "server metadata: %s %r" % (st, body))
    st, body = call("GET", base + "/v2/models/%s/ready" % model)
    check(st == 200 and body.get("ready") is True and body.get("name") == model, "model ready: %s %r" % (st, body))
    st, md = call("GET", base + "/v2/models/%s" % model)
    check(st == 200 and md.get("name") == model and md.get("platform") == "onnxruntime_onnx",
          "model metadata: %s %r" % (st, md))
    ins = {t["name"]: t for t in md.get("inputs", [])}
    outs = {t["name"]: t for t in md.get("outputs", [])}
    check(ins.get("x", {}).get("shape") == [-1, feat] and ins["x"]["datatype"] == "FP32", "x metadata %r" % ins.get("x"))
    check(ins.get("edge_index", {}).get("shape") == [2, -1], "edge_index metadata %r" % ins.get("edge_index"))
    check(set(outs) >= {"scores", "probabilities", "predictions"}, "outputs %r" % sorted(outs))
    versions = md.get("versions") or []
    check(len(versions) >= 1, "versions %r" % versions)
    if versions:
        st, body = call("GET", base + "/v2/models/%s/versions/%s" % (model, versions[-1]))
        check(st == 200 and body.get("name") == model, "versioned metadata: %s" % st)
        st, body = call("GET", base + "/v2/models/%s/versions/%s/ready" % (model, versions[-1]))
        check(st == 200 and body.get("ready") is True, "versioned ready: %s %r" % (st, body))

    def infer_request(x_data, edge_data, **extra):
        req = {"id": "rest-1", "inputs": [
            {"name": "x", "shape": [n, feat], "datatype": "FP32", "data": x_data},
            {"name": "edge_index", "shape": [2, e], "datatype": "INT64", "data": edge_data}]}
        req.update(extra)
        return req

    def check_scores(label, st, body):
        check(st == 200, "%s: status %s %r" % (label, st, body if st != 200 else ""))
        if st != 200:
            return
        check(body.get("model_name") == model and body.get("id") == "rest-1", "%s: model_name/id %r %r" %
              (label, body.get("model_name"), body.get("id")))
        got = {o["name"]: o for o in body["outputs"]}
        s = got.get("scores")
        check(s is not None and s["shape"] == [n] and s["datatype"] == "FP32" and len(s["data"]) == n,
              "%s: scores tensor %r" % (label, None if s is None else (s["shape"], s["datatype"])))
        if s is not None and len(s["data"]) == n:
            diff = max((abs(a - b) for a, b in zip(s["data"], want)), default=0.0)
            check(diff <= TOLERANCE, "%s: scores differ from ProcessGraph's by %g" % (label, diff))
            print("%s: %d scores, max abs diff vs ProcessGraph %.3g" % (label, n, diff), flush=True)
        p = got.get("probabilities")
        if p is not None:
            c = p["shape"][1]
            rows = [p["data"][i * c:(i + 1) * c] for i in range(n)]
            check(all(math.isclose(sum(r), 1, abs_tol=1e-4) for r in rows), "%s: probability rows sum to 1" % label)
            pr = got.get("predictions", {}).get("data")
            if pr is not None:
                check(all(r[k] >= max(r) - 1e-6 for r, k in zip(rows, pr)), "%s: predictions are the top classes" % label)

    url = base + "/v2/models/%s/infer" % model
    st, body = call("POST", url, infer_request(x, edges))
    check_scores("rest flat", st, body)
    nested_x = [x[i * feat:(i + 1) * feat] for i in range(n)]
    if versions:
        vurl = base + "/v2/models/%s/versions/%s/infer" % (model, versions[-1])
        st, body = call("POST", vurl, infer_request(nested_x, [edges[:e], edges[e:]]))
        check_scores("rest nested, versioned", st, body)
        check(st == 200 and body.get("model_version") == versions[-1], "versioned: model_version %r" % body.get("model_version"))
    st, body = call("POST", url, infer_request(x, edges, outputs=[{"name": "predictions"}]))
    check(st == 200 and [o["name"] for o in body.get("outputs", [])] == ["predictions"], "requested outputs honoured")

    def expect_error(label, st, body, code, substr):
        msg = body.get("error", "") if isinstance(body, dict) else ""
        check(st == code and substr in msg, "%s: %s %r, want %d with an error naming %r" % (label, st, body, code, substr))

    far = list(edges)
    far[e] = n  # row 1, column 0: one past the last node
    st, body = call("POST", url, infer_request(x, far))
    expect_error("edge out of range", st, body, 400, "edge_index")
    st, body = call("POST", url, {"inputs": [{"name": "x", "shape": [1, feat + 1], "datatype": "FP32", "data": [0] * (feat + 1)},
                                             {"name": "edge_index", "shape": [2, 0], "datatype": "INT64", "data": []}]})
    expect_error("wrong feature width", st, body, 400, '"x"')
    st, body = call("POST", url, {"inputs": [{"name": "x", "shape": [1, feat], "datatype": "FP64", "data": [0] * feat}]})
    expect_error("wrong datatype", st, body, 400, '"x"')
    st, body = call("POST", base + "/v2/models/no-such-model/infer", infer_request(x, edges))
    expect_error("unknown model", st, body, 404, "no-such-model")
    st, body = call("GET", base + "/v2/models/no-such-model")
    expect_error("unknown model metadata", st, body, 404, "no-such-model")

    if failures:
        print("oip_rest_client: %d of %d checks failed" % (len(failures), count))
        sys.exit(1)
    print("oip_rest_client: all %d checks ok (%s, %d nodes, %d edges)" % (count, model, n, e))


if __name__ == "__main__":
    main()
