#!/usr/bin/env python3
"""gcnserve's gRPC API from Python, built the way a stranger builds a client.

Stubs come from proto/gcn.proto, unmodified, compiled at run time by protoc with
Debian's grpc_python_plugin. With the bearer token it checks ProcessGraph (plain
and gzip-compressed) against PyTorch's scores in the karate fixture, that a call
without the token is UNAUTHENTICATED, and the stored-graph calls: CreateGraph,
ApplyDelta, ScoreNodes (equal to ProcessGraph of the changed graph), ExportGraph,
DeleteGraph.

Usage: python_client.py --addr HOST:PORT --token TOKEN --fixture karate.json --proto gcn.proto
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import sys

import grpc
from google.protobuf import json_format

# The shared stub loader lives in test/pyutil.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pyutil.stubs import load_stubs  # noqa: E402

TOLERANCE = 1e-5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--proto", required=True)
    args = ap.parse_args()
    pb, pb_grpc = load_stubs(args.proto, prefix="gcn-stubs-")
    fixture = json.load(open(args.fixture))
    graph = json_format.ParseDict(fixture["request"], pb.GraphData(), ignore_unknown_fields=True)
    want = fixture["scores"]
    md = [("authorization", "Bearer " + args.token)]
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    with grpc.insecure_channel(args.addr) as channel:
        gcn = pb_grpc.GCNServiceStub(channel)
        for name, compression in (("plain", None), ("gzip", grpc.Compression.Gzip)):
            res = gcn.ProcessGraph(graph, metadata=md, timeout=30, compression=compression)
            diff = max(abs(res.node_scores[n.id] - w) for n, w in zip(graph.nodes, want))
            check(len(res.node_scores) == len(graph.nodes) and diff <= TOLERANCE,
                  "ProcessGraph (%s): %d scores, max diff from PyTorch %.2g" % (name, len(res.node_scores), diff))
        try:
            gcn.ProcessGraph(graph, timeout=30)
            check(False, "ProcessGraph without the token answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAUTHENTICATED, "ProcessGraph without the token: %s" % e.code())

        graphs = pb_grpc.GraphServiceStub(channel)
        info = graphs.CreateGraph(pb.CreateGraphRequest(graph_id="py", graph=graph), metadata=md, timeout=30)
        check(info.nodes == len(graph.nodes) and info.revision == 1, "CreateGraph: %d nodes, revision %d" % (info.nodes, info.revision))
        added = pb.Edge(source_id=graph.nodes[0].id, target_id=graph.nodes[-1].id)
        delta = graphs.ApplyDelta(pb.DeltaRequest(graph_id="py", add_edges=[added]), metadata=md, timeout=30)
        check(delta.revision == 2, "ApplyDelta: revision %d" % delta.revision)
        changed = pb.GraphData()
        changed.CopyFrom(graph)
        changed.edges.append(added)
        full = gcn.ProcessGraph(changed, metadata=md, timeout=30).node_scores
        ids = [graph.nodes[0].id, graph.nodes[-1].id, graph.nodes[5].id]
        scored = graphs.ScoreNodes(pb.ScoreRequest(graph_id="py", node_ids=ids), metadata=md, timeout=30)
        diff = max(abs(scored.node_scores[i] - full[i]) for i in ids)
        check(scored.revision == 2 and len(scored.node_scores) == 3 and diff <= TOLERANCE,
              "ScoreNodes: revision %d, %d scores, max diff from ProcessGraph %.2g" % (scored.revision, len(scored.node_scores), diff))
        nodes = edges = 0
        for chunk in graphs.ExportGraph(pb.ExportGraphRequest(graph_id="py"), metadata=md, timeout=30):
            nodes += len(chunk.nodes)
            edges += len(chunk.edges)
        check(nodes == len(changed.nodes) and edges == len(changed.edges), "ExportGraph: %d nodes, %d edges" % (nodes, edges))
        graphs.DeleteGraph(pb.DeleteGraphRequest(graph_id="py"), metadata=md, timeout=30)
        try:
            graphs.GetGraph(pb.GetGraphRequest(graph_id="py"), metadata=md, timeout=30)
            check(False, "GetGraph after DeleteGraph answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "GetGraph after DeleteGraph: %s" % e.code())
    if failures:
        sys.exit("%d checks failed" % len(failures))


if __name__ == "__main__":
    main()
