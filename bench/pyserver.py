#!/usr/bin/python3
"""The reference Python service gcnserve replaces, for the benchmark.

It is written the way the tutorial builds it: grpcio's server with a
ThreadPoolExecutor, the request turned into torch tensors from Python lists,
and a 2-layer GCN in PyTorch with sparse aggregation (index_add_, as PyG's
scatter-add does). It computes what the ONNX model computes, with the ONNX
file's own weights, so the benchmark compares two implementations of the
same function (bench/run.sh checks that their scores agree):

    /usr/bin/python3 bench/pyserver.py --model model/karate.onnx --port 50051

Graph semantics (scripts/export_onnx.py's docstring is the authority):
features are row-normalized (all-zero rows stay 0); each listed edge u != v
is one undirected link (its reverse is added); listed self loops weigh 0 and
one self loop of weight 1 is added per node; duplicate edges add up;
symmetric normalization D^-1/2 (A+I) D^-1/2; h = X @ W, then aggregation,
then bias; ReLU between the layers, softmax at the end. node_scores is the
probability of the metadata's score_class, else of the node's top class.

The message classes come from protoc --python_out, generated into a
temporary directory at start from proto/gcn.proto (Debian has protoc but no
grpc_tools), and the service is registered with a generic handler: the same
thing grpc_tools' generated add_GCNServiceServicer_to_server does.

torch threads: left at torch's default (--torch-threads 0), as a Python
developer would. Debian's torch 1.13 (OpenMP build) defaults to 1 intra-op
thread here, which is also gcnserve's default; the concurrency comes from
the executor's threads, since torch releases the GIL inside its kernels.

--self-check compares this module's forward pass with scripts/export_onnx.py's
torch GCN on random graphs and exits.
"""

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from concurrent import futures

import grpc
import numpy as np
import onnx
import torch
from onnx import numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_MESSAGE = 64 << 20  # gcnserve's default request limit


def load_gcn_pb2(proto_path):
    """Compiles gcn.proto with protoc into a temporary directory and imports it."""
    with tempfile.TemporaryDirectory(prefix="gcn_pb2_") as out:
        subprocess.run(
            ["protoc", "-I", os.path.dirname(proto_path), "--python_out", out, proto_path],
            check=True,
        )
        sys.path.insert(0, out)
        try:
            return importlib.import_module("gcn_pb2")
        finally:
            sys.path.remove(out)


class GCN:
    """GCN is the exported model's forward pass in PyTorch, with its weights."""

    def __init__(self, path):
        model = onnx.load(path)
        arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.w1, self.b1, self.w2, self.b2 = (torch.from_numpy(a.astype(np.float32)) for a in find_weights(arrays))
        self.features = self.w1.shape[0]
        meta = {p.key: p.value for p in model.metadata_props}
        class_names = json.loads(meta["class_names"]) if "class_names" in meta else None
        self.score_class = None
        if "score_class" in meta:
            self.score_class = class_names.index(meta["score_class"]) if class_names else int(meta["score_class"])
        self.name = meta.get("model_name", model.graph.name)

    @torch.no_grad()
    def probabilities(self, x, edge_index):
        n = x.shape[0]
        rowsum = x.sum(dim=1, keepdim=True)
        is_zero = rowsum == 0
        inverse = torch.where(is_zero, torch.zeros_like(rowsum), 1.0 / torch.where(is_zero, torch.ones_like(rowsum), rowsum))
        x = x * inverse

        src, dst = edge_index[0], edge_index[1]
        loops = torch.arange(n, dtype=torch.int64)
        source = torch.cat([src, dst, loops])
        target = torch.cat([dst, src, loops])
        link = (src != dst).to(torch.float32)
        weight = torch.cat([link, link, torch.ones(n)])
        degree = torch.zeros(n).index_add_(0, target, weight)
        inv_sqrt = 1.0 / torch.sqrt(degree)
        norm = (weight * inv_sqrt[source] * inv_sqrt[target])[:, None]

        def conv(h, w, b):
            h = h @ w
            return torch.zeros(n, h.shape[1]).index_add_(0, target, h[source] * norm) + b

        h = torch.relu(conv(x, self.w1, self.b1))
        return torch.softmax(conv(h, self.w2, self.b2), dim=1)

    def scores(self, probabilities):
        if self.score_class is not None:
            return probabilities[:, self.score_class]
        return probabilities.max(dim=1).values


def find_weights(arrays):
    """Returns W1 [F,H], b1 [H], W2 [H,C], b2 [C] from the ONNX initializers:
    by export_onnx.py's names, else by shape (the only two float matrices
    that chain, and the vectors of their output widths)."""
    names = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")
    if all(n in arrays for n in names):
        return [arrays[n] for n in names]
    floats = {k: v for k, v in arrays.items() if v.dtype == np.float32}
    matrices = [v for v in floats.values() if v.ndim == 2]
    chains = [(a, b) for a in matrices for b in matrices if a is not b and a.shape[1] == b.shape[0]]
    if len(chains) != 1:
        raise ValueError(f"cannot identify the two weight matrices among shapes {[m.shape for m in matrices]}")
    w1, w2 = chains[0]

    def bias(width):
        found = [v for v in floats.values() if v.ndim == 1 and v.shape[0] == width]
        if len(found) != 1:
            raise ValueError(f"cannot identify the bias of width {width}")
        return found[0]

    return [w1, bias(w1.shape[1]), w2, bias(w2.shape[1])]


class GCNService:
    """GCNService answers ProcessGraph."""

    def __init__(self, model, pb):
        self.model = model
        self.pb = pb

    def ProcessGraph(self, request, context):
        if not request.nodes:
            return self.pb.GCNResult()
        index = {node.id: i for i, node in enumerate(request.nodes)}
        if len(index) != len(request.nodes):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "duplicate node id")
        for node in request.nodes:
            if len(node.features) != self.model.features:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"node {node.id!r}: {len(node.features)} features, want {self.model.features}")
        try:
            source = [index[edge.source_id] for edge in request.edges]
            target = [index[edge.target_id] for edge in request.edges]
        except KeyError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"edge endpoint {err} is not a node id")

        x = torch.tensor([list(node.features) for node in request.nodes], dtype=torch.float32)
        edge_index = torch.tensor([source, target], dtype=torch.int64).reshape(2, -1)
        scores = self.model.scores(self.model.probabilities(x, edge_index))
        return self.pb.GCNResult(node_scores={node.id: s for node, s in zip(request.nodes, scores.tolist())})


def serve(args):
    pb = load_gcn_pb2(args.proto)
    model = GCN(args.model)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    service = GCNService(model, pb)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    handler = grpc.method_handlers_generic_handler("GCNService", {
        "ProcessGraph": grpc.unary_unary_rpc_method_handler(
            service.ProcessGraph,
            request_deserializer=pb.GraphData.FromString,
            response_serializer=pb.GCNResult.SerializeToString,
        ),
    })
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    print(f"ready: {model.name} on {args.host}:{args.port}, {args.workers} workers "
          f"(Python {platform.python_version()}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} intra-op thread(s), grpcio {grpc.__version__})", flush=True)
    server.wait_for_termination()


def self_check(args):
    """Compares GCN with export_onnx.py's torch module on random graphs."""
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import export_onnx

    model = GCN(args.model)
    reference = export_onnx.GCN(model.features, model.w1.shape[1], model.w2.shape[1], 0.0)
    reference.load_state_dict({"weight1": model.w1, "bias1": model.b1, "weight2": model.w2, "bias2": model.b2})
    reference.eval()
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, e in ((1, 0), (2, 1), (34, 78), (500, 3000)):
        x = torch.from_numpy(rng.random((n, model.features), dtype=np.float32))
        x[0] = 0  # an all-zero row
        edge_index = torch.from_numpy(rng.integers(0, n, (2, e)))
        with torch.no_grad():
            diff = float((model.probabilities(x, edge_index) - reference(x, edge_index)).abs().max())
        worst = max(worst, diff)
    print(f"self-check: max abs difference from export_onnx.GCN {worst:.3g}")
    return 0 if worst <= 1e-6 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=50051, help="listen port")
    parser.add_argument("--host", default="127.0.0.1", help="listen host")
    parser.add_argument("--model", default=os.path.join(REPO, "model", "karate.onnx"), help="ONNX model from scripts/export_onnx.py")
    parser.add_argument("--workers", type=int, default=10, help="ThreadPoolExecutor max_workers (the tutorial's 10)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--proto", default=os.path.join(REPO, "proto", "gcn.proto"), help="the service's .proto")
    parser.add_argument("--self-check", action="store_true", help="compare with export_onnx.py's torch GCN and exit")
    args = parser.parse_args()
    if args.self_check:
        return self_check(args)
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
