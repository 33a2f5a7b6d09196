#!/usr/bin/python3
"""Unit checks for scripts/export_onnx.py.

Run from the repository root (a few seconds, no dataset needed):

    /usr/bin/python3 -m unittest scripts/test_export.py -v

The key check is dense_reference: the graph semantics of the model card
written as a dense N x N matrix, independently of the torch module's
index-based message passing. The torch module must agree with it, and the
exported ONNX graph (run by the script's numpy interpreter) must agree with
the torch module. The Go tests close the loop by replaying the golden fixtures
through ONNX Runtime.
"""

import gzip
import json
import os
import sys
import tempfile
import unittest

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_onnx as ex  # noqa: E402

TOLERANCE = 1e-6


def dense_reference(model: ex.GCN, features: np.ndarray, edges) -> np.ndarray:
    """The model card's rules in float64, built as a dense adjacency matrix."""
    x = features.astype(np.float64)
    rowsum = x.sum(axis=1, keepdims=True)
    x = np.divide(x, rowsum, out=np.zeros_like(x), where=rowsum != 0)
    n = x.shape[0]
    adjacency = np.eye(n)  # exactly one self loop per node
    for u, v in edges:
        if u != v:  # listed self loops are ignored; duplicates add up
            adjacency[u, v] += 1
            adjacency[v, u] += 1
    inv_sqrt = 1 / np.sqrt(adjacency.sum(axis=1))
    normalized = inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
    w1, b1, w2, b2 = (p.detach().numpy().astype(np.float64)
                      for p in (model.weight1, model.bias1, model.weight2, model.bias2))
    h = np.maximum(normalized @ (x @ w1) + b1, 0)
    logits = normalized @ (h @ w2) + b2
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_model(features: int = 6, classes: int = 3, seed: int = 0) -> ex.GCN:
    torch.manual_seed(seed)
    return ex.GCN(features, 8, classes, 0.5).eval()


def probabilities_torch(model, features, edges) -> np.ndarray:
    edge_index = np.array(edges, dtype=np.int64).reshape(-1, 2).T.copy()
    return ex.torch_probabilities(model, features, edge_index)


def export(model) -> onnx.ModelProto:
    return ex.build_onnx(model, {"model_name": "test"}, "test", 1, "test model")


class GraphSemanticsTest(unittest.TestCase):
    def setUp(self):
        self.model = random_model()
        self.rng = np.random.default_rng(7)

    def features(self, n):
        return ex.random_features(self.rng, n, 6)

    def test_torch_matches_dense_reference(self):
        for n, e in [(1, 0), (2, 1), (5, 12), (30, 80)]:
            features = self.features(n)
            features[0] = 0.0  # an all-zero row
            edges = [tuple(p) for p in self.rng.integers(0, n, size=(e, 2)).tolist()]
            edges += edges[: e // 3]
            with self.subTest(n=n, e=len(edges)):
                got = probabilities_torch(self.model, features, edges)
                want = dense_reference(self.model, features, edges)
                self.assertLess(np.abs(got - want).max(), TOLERANCE)

    def test_request_self_loops_change_nothing(self):
        features = self.features(4)
        plain = probabilities_torch(self.model, features, [(0, 1), (1, 2)])
        looped = probabilities_torch(self.model, features, [(0, 0), (0, 1), (1, 1), (1, 2), (3, 3), (3, 3)])
        np.testing.assert_array_equal(plain, looped)

    def test_reverse_listing_counts_like_a_duplicate(self):
        features = self.features(3)
        twice = probabilities_torch(self.model, features, [(0, 1), (0, 1), (1, 2)])
        both_ways = probabilities_torch(self.model, features, [(0, 1), (1, 0), (1, 2)])
        once = probabilities_torch(self.model, features, [(0, 1), (1, 2)])
        np.testing.assert_allclose(twice, both_ways, atol=TOLERANCE)
        self.assertGreater(np.abs(twice - once).max(), 1e-4, "a duplicate edge should change the weights")

    def test_edge_direction_does_not_matter(self):
        features = self.features(4)
        forward = probabilities_torch(self.model, features, [(0, 1), (1, 2), (2, 3)])
        backward = probabilities_torch(self.model, features, [(1, 0), (2, 1), (3, 2)])
        np.testing.assert_allclose(forward, backward, atol=TOLERANCE)

    def test_zero_feature_rows_give_finite_probabilities(self):
        features = np.zeros((3, 6), dtype=np.float32)
        got = probabilities_torch(self.model, features, [(0, 1)])
        self.assertTrue(np.all(np.isfinite(got)))
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


class OnnxGraphTest(unittest.TestCase):
    def setUp(self):
        self.model = random_model(features=5, classes=4, seed=3)
        self.proto = export(self.model)

    def test_signature(self):
        graph = self.proto.graph
        self.assertEqual([i.name for i in graph.input], ["x", "edge_index"])
        self.assertEqual([o.name for o in graph.output], ["probabilities"])

        def dims(value):
            return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

        self.assertEqual(dims(graph.input[0]), ["num_nodes", 5])
        self.assertEqual(dims(graph.input[1]), [2, "num_edges"])
        self.assertEqual(dims(graph.output[0]), ["num_nodes", 4])
        self.assertEqual(graph.input[1].type.tensor_type.elem_type, onnx.TensorProto.INT64)
        self.assertEqual(self.proto.opset_import[0].version, ex.OPSET)

    def test_scatternd_declares_single_thread(self):
        # ScatterND(reduction="add") races in ONNX Runtime's CPU kernel with
        # more than one intra-op thread: the model must say so.
        ops = {n.op_type for n in self.proto.graph.node}
        meta = {p.key: p.value for p in self.proto.metadata_props}
        if "ScatterND" in ops:
            self.assertEqual(meta.get("max_intra_op_threads"), "1")

    def test_interpreter_matches_torch(self):
        cases = ex.small_cases(5, seed=0) + ex.stress_cases(5, seed=0)
        worst = ex.check_parity(self.model, self.proto, cases)
        self.assertLessEqual(worst, TOLERANCE)

    def test_empty_edge_index(self):
        features = np.ones((3, 5), dtype=np.float32)
        edge_index = np.zeros((2, 0), dtype=np.int64)
        got = ex.run_onnx_numpy(self.proto, {"x": features, "edge_index": edge_index})["probabilities"]
        want = ex.torch_probabilities(self.model, features, edge_index)
        self.assertEqual(got.shape, (3, 4))
        self.assertLess(np.abs(got - want).max(), TOLERANCE)


def run_layers_spec(proto: onnx.ModelProto, features: np.ndarray, edges) -> np.ndarray:
    """Evaluates the "layers" metadata (as gcn.Network does in Go) in float64."""
    meta = {p.key: p.value for p in proto.metadata_props}
    spec = json.loads(meta["layers"])
    weights = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    x = features.astype(np.float64)
    if spec["input_norm"] == "row":
        rowsum = x.sum(axis=1, keepdims=True)
        x = np.divide(x, rowsum, out=np.zeros_like(x), where=rowsum != 0)
    n = x.shape[0]
    adjacency = np.eye(n)
    for u, v in edges:
        if u != v:
            adjacency[u, v] += 1
            adjacency[v, u] += 1
    degree = adjacency.sum(axis=1)
    for layer in spec["layers"]:
        h = x @ weights[layer["weight"]]
        kind = layer["aggregation"]
        if kind == "gcn":
            a = (1 / np.sqrt(degree))[:, None] * (adjacency @ ((1 / np.sqrt(degree))[:, None] * h))
        elif kind == "mean":
            a = (adjacency @ h) / degree[:, None]
        else:
            a = adjacency @ h
        if layer.get("bias"):
            a = a + weights[layer["bias"]]
        x = np.maximum(a, 0) if layer["activation"] == "relu" else a
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class LayersMetadataTest(unittest.TestCase):
    def test_layers_describe_the_graph(self):
        model = random_model(features=5, classes=4, seed=3)
        proto = export(model)
        meta = {p.key: p.value for p in proto.metadata_props}
        self.assertEqual(meta["receptive_field"], "2")
        spec = json.loads(meta["layers"])
        self.assertEqual(spec["input_norm"], "row")
        self.assertEqual(spec["output"], "softmax")
        self.assertEqual([(l["aggregation"], l["activation"]) for l in spec["layers"]],
                         [("gcn", "relu"), ("gcn", "none")])
        rng = np.random.default_rng(11)
        for n, e in [(1, 0), (4, 6), (25, 70)]:
            features = ex.random_features(rng, n, 5)
            edges = [tuple(p) for p in rng.integers(0, n, size=(e, 2)).tolist()]
            got = run_layers_spec(proto, features, edges)
            want = dense_reference(model, features, edges)
            self.assertLess(np.abs(got - want).max(), TOLERANCE, f"n={n} e={e}")

    def test_portable_omits_layers(self):
        proto = ex.build_onnx(random_model(), {"model_name": "test"}, "test", 1, "test model", portable=True)
        meta = {p.key: p.value for p in proto.metadata_props}
        self.assertNotIn("layers", meta)
        self.assertEqual(meta["receptive_field"], "2")


class DataLoadingTest(unittest.TestCase):
    def write(self, directory, nodes, edges):
        with open(os.path.join(directory, "nodes.csv"), "w") as f:
            f.write("id,label,split,f0,f1\n" + "".join(line + "\n" for line in nodes))
        with open(os.path.join(directory, "edges.csv"), "w") as f:
            f.write("source,target\n" + "".join(line + "\n" for line in edges))

    def test_string_labels_become_sorted_classes(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, ["a,dog,train,1,0", "b,cat,test,0,1", "c,,,1,1"], ["a,b", "b,c"])
            data = ex.load_csv_dataset(d, None)
        self.assertEqual(data.class_names, ["cat", "dog"])
        self.assertEqual(data.labels.tolist(), [1, 0, -1])
        self.assertEqual(data.edge_index.tolist(), [[0, 1], [1, 2]])
        self.assertEqual((data.train.tolist(), data.test.tolist()), ([True, False, False], [False, True, False]))

    def test_integer_labels_with_names(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, ["a,1,train,1,0", "b,0,val,0,1"], [])
            data = ex.load_csv_dataset(d, ["zero", "one", "two"])
        self.assertEqual(data.class_names, ["zero", "one", "two"])
        self.assertEqual(data.labels.tolist(), [1, 0])
        self.assertEqual(data.edge_index.shape, (2, 0))

    def test_unknown_edge_endpoint_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, ["a,1,train,1,0"], ["a,zz"])
            with self.assertRaisesRegex(ex.DataError, "'zz' is not a node id"):
                ex.load_csv_dataset(d, None)


    def test_gzipped_tables(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, ["a,dog,train,1,0", "b,cat,test,0,1"], ["a,b"])
            for name in ("nodes.csv", "edges.csv"):
                path = os.path.join(d, name)
                with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as g:
                    g.write(f.read())
                os.remove(path)
            data = ex.load_csv_dataset(d, None)
        self.assertEqual(data.node_ids, ["a", "b"])
        self.assertEqual(data.edge_index.tolist(), [[0], [1]])

    def test_missing_table_is_named_plain(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(OSError, "nodes.csv"):
                ex.load_csv_dataset(d, None)


class CommandLineTest(unittest.TestCase):
    def parse_error(self, argv):
        with self.assertRaises(SystemExit), open(os.devnull, "w") as devnull:
            stderr, sys.stderr = sys.stderr, devnull
            try:
                ex.parse_args(argv)
            finally:
                sys.stderr = stderr

    def test_recipe_defaults_are_kipf(self):
        args = ex.parse_args(["--karate", "--out", "m.onnx"])
        self.assertEqual((args.hidden, args.dropout, args.lr, args.weight_decay, args.epochs, args.early_stopping,
                          args.bias), (16, 0.5, 0.01, 5e-4, 200, 10, False))

    def test_seeds_writes_nothing(self):
        self.assertEqual(ex.parse_args(["--karate", "--seeds", "3"]).seeds, 3)
        self.parse_error(["--karate", "--seeds", "3", "--out", "m.onnx"])
        self.parse_error(["--karate", "--seeds", "0"])
        self.parse_error(["--random-init", "--features", "2", "--classes", "2", "--seeds", "2"])
        self.parse_error(["--karate"])  # no --out and no --seeds


class TrainingTest(unittest.TestCase):
    def test_biases_stay_zero_without_bias(self):
        torch.manual_seed(0)
        model = ex.GCN(34, 16, 2, 0.5)
        args = ex.parse_args(["--karate", "--out", "m.onnx", "--epochs", "5"])
        ex.train(model, ex.load_karate(), args, verbose=False)
        self.assertEqual(float(model.bias1.abs().sum() + model.bias2.abs().sum()), 0.0)


class FixtureFormatTest(unittest.TestCase):
    def test_fixture_round_trips_float32(self):
        model = random_model(features=6, classes=3)
        case = ex.small_cases(6, seed=0)[0]
        with tempfile.TemporaryDirectory() as d:
            path = ex.write_fixture(d, case, model, score_class=None)
            with open(path) as f:
                fixture = json.load(f)
        self.assertEqual(set(fixture), {"name", "request", "probabilities", "scores", "class_index"})
        features = np.array([n["features"] for n in fixture["request"]["nodes"]], dtype=np.float32)
        np.testing.assert_array_equal(features, case.features)
        want = ex.torch_probabilities(model, case.features, case.edge_index)
        np.testing.assert_array_equal(np.array(fixture["probabilities"], dtype=np.float32), want)
        self.assertEqual(fixture["class_index"], want.argmax(axis=1).tolist())
        np.testing.assert_array_equal(np.array(fixture["scores"], dtype=np.float32), want.max(axis=1))
        self.assertEqual(fixture["request"]["edges"][0], {"sourceId": "v0", "targetId": "v1"})


if __name__ == "__main__":
    unittest.main()
