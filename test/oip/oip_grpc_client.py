#!/usr/bin/env python3
"""An Open Inference Protocol v2 gRPC client, built the way a user builds one.

Stubs come from the specification's own proto (testdata/open_inference_grpc.proto,
a verbatim copy of kserve/open-inference-protocol's), compiled at run time by
protoc with Debian's grpc_python_plugin; the client knows nothing of gcnserve but
the tensor names its model metadata reports. It checks liveness, readiness,
server and model metadata, and inference with typed contents and with
raw_input_contents (INT64 and INT32 edges, and gzip-compressed), against the scores ProcessGraph gave
for the same graph (max abs diff <= 1e-5), then a few errors.

Usage: oip_grpc_client.py --addr HOST:PORT --case CASE.json [--proto FILE]
CASE.json: {"model", "num_nodes", "feature_dim", "num_classes", "x" (flat, row-major),
"edge_index" (flat [2, E]), "scores" (ProcessGraph's, in node order)}.
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import sys

import grpc
import numpy as np

# The shared stub loader lives in test/pyutil.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pyutil.stubs import load_stubs  # noqa: E402

TOLERANCE = 1e-5
HERE = os.path.dirname(os.path.abspath(__file__))


class Checks:
    def __init__(self):
        self.failures = []
        self.count = 0

    def check(self, ok, what):
        self.count += 1
        if not ok:
            self.failures.append(what)
            print("FAIL " + what, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--proto", default=os.path.join(HERE, "testdata", "open_inference_grpc.proto"))
    args = ap.parse_args()
    pb, pb_grpc = load_stubs(args.proto, prefix="oip-stubs-")
    with open(args.case) as f:
        case = json.load(f)
    model, n, feat = case["model"], case["num_nodes"], case["feature_dim"]
    x = np.asarray(case["x"], dtype=np.float32).reshape(n, feat)
    edges = np.asarray(case["edge_index"], dtype=np.int64).reshape(2, -1)
    want = np.asarray(case["scores"], dtype=np.float32)

    channel = grpc.insecure_channel(args.addr, options=[
        ("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    c = Checks()
    T = 60

    c.check(stub.ServerLive(pb.ServerLiveRequest(), timeout=T).live, "ServerLive.live")
    c.check(stub.ServerReady(pb.ServerReadyRequest(), timeout=T).ready, "ServerReady.ready")
    c.check(stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=T).ready, "ModelReady.ready")
    sm = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=T)
    c.check(sm.name != "" and sm.version != "", "ServerMetadata has name and version: %r" % sm)

    md = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=T)
    c.check(md.name == model, "ModelMetadata.name %r == %r" % (md.name, model))
    c.check(md.platform == "onnxruntime_onnx", "platform %r" % md.platform)
    c.check(len(md.versions) >= 1, "versions %r" % list(md.versions))
    ins = {t.name: (t.datatype, list(t.shape)) for t in md.inputs}
    outs = {t.name: (t.datatype, list(t.shape)) for t in md.outputs}
    c.check(ins.get("x") == ("FP32", [-1, feat]), "input x metadata %r" % (ins.get("x"),))
    c.check(ins.get("edge_index") == ("INT64", [2, -1]), "input edge_index metadata %r" % (ins.get("edge_index"),))
    c.check(outs.get("scores") == ("FP32", [-1]), "output scores metadata %r" % (outs.get("scores"),))
    num_classes = outs.get("probabilities", (None, [None, None]))[1][1]
    c.check(num_classes == case["num_classes"], "probabilities has %r classes" % num_classes)
    c.check(outs.get("predictions") == ("INT64", [-1]), "output predictions metadata %r" % (outs.get("predictions"),))

    def tensor(name, datatype, shape, **contents):
        t = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
        if contents:
            t.contents.CopyFrom(pb.InferTensorContents(**contents))
        return t

    def outputs_by_name(res, raw):
        got = {}
        for i, o in enumerate(res.outputs):
            dtype = {"FP32": "<f4", "INT64": "<i8"}[o.datatype]
            if raw:
                arr = np.frombuffer(res.raw_output_contents[i], dtype=dtype)
            elif o.datatype == "FP32":
                arr = np.asarray(o.contents.fp32_contents, dtype=np.float32)
            else:
                arr = np.asarray(o.contents.int64_contents, dtype=np.int64)
            got[o.name] = arr.reshape(list(o.shape))
        return got

    def check_scores(label, got):
        s = got.get("scores")
        c.check(s is not None and s.shape == (n,), "%s: scores shape %r" % (label, None if s is None else s.shape))
        if s is not None and s.shape == want.shape:
            diff = float(np.max(np.abs(s - want))) if n else 0.0
            c.check(diff <= TOLERANCE, "%s: scores differ from ProcessGraph's by %g" % (label, diff))
            print("%s: %d scores, max abs diff vs ProcessGraph %.3g" % (label, n, diff), flush=True)
        p = got.get("probabilities")
        if p is not None:
            c.check(p.shape == (n, num_classes), "%s: probabilities shape %r" % (label, p.shape))
            c.check(bool(np.all(np.abs(p.sum(axis=1) - 1) < 1e-4)), "%s: probability rows sum to 1" % label)
            pr = got.get("predictions")
            if pr is not None:
                top = p.max(axis=1)
                chosen = p[np.arange(n), pr]
                c.check(bool(np.all(chosen >= top - 1e-6)), "%s: predictions are the top classes" % label)

    # Typed contents.
    req = pb.ModelInferRequest(model_name=model, id="typed-1", inputs=[
        tensor("x", "FP32", [n, feat], fp32_contents=x.ravel().tolist()),
        tensor("edge_index", "INT64", [2, edges.shape[1]], int64_contents=edges.ravel().tolist())])
    res = stub.ModelInfer(req, timeout=T)
    c.check(res.id == "typed-1" and res.model_name == model, "typed: id/model_name echoed: %r %r" % (res.id, res.model_name))
    c.check(len(res.raw_output_contents) == 0, "typed: answer uses typed contents")
    check_scores("grpc typed", outputs_by_name(res, raw=False))

    # raw_input_contents, INT64 and INT32 edges; the answer is raw too.
    for dt, np_dt in (("INT64", "<i8"), ("INT32", "<i4")):
        req = pb.ModelInferRequest(model_name=model, model_version=md.versions[-1], inputs=[
            tensor("x", "FP32", [n, feat]), tensor("edge_index", dt, [2, edges.shape[1]])],
            raw_input_contents=[x.astype("<f4").tobytes(), edges.astype(np_dt).tobytes()])
        res = stub.ModelInfer(req, timeout=T)
        c.check(len(res.raw_output_contents) == len(res.outputs) == 3, "raw %s: raw_output_contents for every output" % dt)
        check_scores("grpc raw " + dt, outputs_by_name(res, raw=True))

    # A gzip-compressing client (the server answers in kind).
    req = pb.ModelInferRequest(model_name=model, inputs=[
        tensor("x", "FP32", [n, feat]), tensor("edge_index", "INT64", [2, edges.shape[1]])],
        raw_input_contents=[x.astype("<f4").tobytes(), edges.astype("<i8").tobytes()])
    res = stub.ModelInfer(req, timeout=T, compression=grpc.Compression.Gzip)
    check_scores("grpc raw gzip", outputs_by_name(res, raw=True))

    # Only the requested output.
    req = pb.ModelInferRequest(model_name=model, inputs=[
        tensor("x", "FP32", [n, feat]), tensor("edge_index", "INT64", [2, edges.shape[1]])],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="scores")],
        raw_input_contents=[x.astype("<f4").tobytes(), edges.astype("<i8").tobytes()])
    res = stub.ModelInfer(req, timeout=T)
    c.check([o.name for o in res.outputs] == ["scores"], "requested outputs honoured: %r" % [o.name for o in res.outputs])

    # Errors: the status code and a message naming the tensor.
    def expect_error(label, req, code, substr):
        try:
            stub.ModelInfer(req, timeout=T)
        except grpc.RpcError as e:
            c.check(e.code() == code and substr in e.details(),
                    "%s: got %s %r, want %s containing %r" % (label, e.code(), e.details(), code, substr))
            return
        c.check(False, "%s: succeeded, want %s" % (label, code))

    bad = x.copy()
    bad[0, 1] = np.nan
    expect_error("NaN feature", pb.ModelInferRequest(model_name=model, inputs=[
        tensor("x", "FP32", [n, feat]), tensor("edge_index", "INT64", [2, edges.shape[1]])],
        raw_input_contents=[bad.astype("<f4").tobytes(), edges.astype("<i8").tobytes()]),
        grpc.StatusCode.INVALID_ARGUMENT, "x[0][1] is NaN")
    far = np.array([[0], [n]], dtype=np.int64)
    expect_error("edge out of range", pb.ModelInferRequest(model_name=model, inputs=[
        tensor("x", "FP32", [n, feat]), tensor("edge_index", "INT64", [2, 1])],
        raw_input_contents=[x.astype("<f4").tobytes(), far.astype("<i8").tobytes()]),
        grpc.StatusCode.INVALID_ARGUMENT, "edge_index")
    expect_error("wrong feature width", pb.ModelInferRequest(model_name=model, inputs=[
        tensor("x", "FP32", [1, feat + 1], fp32_contents=[0.0] * (feat + 1)),
        tensor("edge_index", "INT64", [2, 0])]), grpc.StatusCode.INVALID_ARGUMENT, 'input "x"')
    expect_error("unknown model", pb.ModelInferRequest(model_name="no-such-model", inputs=[
        tensor("x", "FP32", [1, feat], fp32_contents=[0.0] * feat), tensor("edge_index", "INT64", [2, 0])]),
        grpc.StatusCode.NOT_FOUND, "no-such-model")

    if c.failures:
        print("oip_grpc_client: %d of %d checks failed" % (len(c.failures), c.count))
        sys.exit(1)
    print("oip_grpc_client: all %d checks ok (%s, %d nodes, %d edges)" % (c.count, model, n, edges.shape[1]))


if __name__ == "__main__":
    main()
