#!/usr/bin/python3
"""Train a 2-layer GCN in PyTorch and export it to ONNX for gcnserve.

Run from the repository root with Debian's Python (it has torch, onnx and
networkx; the pyenv python3 on PATH does not):

    /usr/bin/python3 scripts/export_onnx.py --karate --out model/karate.onnx \\
        --fixtures model/testdata/karate --example-request examples/karate.json
    /usr/bin/python3 scripts/export_onnx.py --data testdata/cora \\
        --out model/cora.onnx
    /usr/bin/python3 scripts/export_onnx.py --random-init --features 16 \\
        --classes 7 --out /tmp/random.onnx

The model is Kipf & Welling, "Semi-Supervised Classification with Graph
Convolutional Networks" (ICLR 2017): two graph convolutions, ReLU and dropout
between them, softmax at the end. The last stdout line is always
"test_accuracy=0.XXXX" (accuracy on the split's test nodes, 4 decimals), or
"test_accuracy=nan" when there is nothing to measure (--random-init, or data
without test nodes), so callers can parse one line in every case.

Model contract (what the Go server relies on)
---------------------------------------------
Inputs are RAW, exactly as a client sends them:
  x           float32 [num_nodes, F]  node features, in request order
  edge_index  int64   [2, num_edges]  row 0 source, row 1 target node index
Output:
  probabilities  float32 [num_nodes, C]  softmax over classes (axis 1)

Graph semantics, identical in the torch module that is trained and in the
ONNX graph that is served (both call the same rules, see the functions
normalize_features and gcn_edge_weights, and the ONNX builder):
 1. Features are row-normalized inside the model: x_i / sum(x_i); a row that
    sums to 0 stays 0 (Kipf's preprocessing). Computed as
    x * Where(rowsum == 0, 0, 1 / Where(rowsum == 0, 1, rowsum)), so no inf or
    NaN is ever produced.
 2. Each listed edge (u, v) with u != v is one undirected link: the model adds
    its reverse. A listed self loop (u, u) gets weight 0, and the model adds
    exactly one self loop of weight 1 per node, so a self loop in a request
    changes nothing. Duplicates count: (u, v) listed twice, or (u, v) and
    (v, u), gives the link weight 2 (multigraph semantics, like PyG's gcn_norm
    without coalescing). Cora's edges.csv lists each link once, so training
    sees the standard Kipf adjacency.
 3. Symmetric normalization D^-1/2 (A + I) D^-1/2: messages S = [src, dst],
    D = [dst, src]; a listed self loop's messages go to a spare row N that is
    dropped (weight 0); deg[d] = 1 (the added self loop) + the messages into d;
    dinv = deg^-1/2.
 4. A layer is h = X @ Weight (the matmul first, so aggregation runs on the
    narrow side), hs = dinv * h (per row), out[d] = dinv[d] * (hs[d] + sum
    over messages e with D[e] = d of hs[S[e]]) + bias. Scaling rows before and
    after the sum, instead of weighting each message, saves a multiply per
    message (on 100k nodes / 500k edges the ORT run went from 338 to 149 ms). Layer 1 -> ReLU -> (dropout, training only) -> layer 2 ->
    softmax. Training also applies dropout to the input features, as Kipf
    does; that is training-only and not part of the exported graph.
Metadata "layers" (omitted with --portable) describes the same forward pass
per layer, weights named by initializer: input_norm "row"; layers of
aggregation "gcn" (rules 2-4), weight, bias, activation relu|none; output
"softmax". "receptive_field" is the number of layers (2). gcnserve runs that
description natively in Go (gcn.Network) after checking at load that it gives
the ONNX graph's probabilities; a model without it runs in ONNX Runtime.
Message passing never crosses connected components, so running a disjoint
union of graphs gives each graph the result it would get alone ("batchable").

Why the ONNX graph is built by hand with onnx.helper instead of
torch.onnx.export: torch 1.13 exports index_add_ as ScatterElements without a
reduction, which silently overwrites instead of summing. Here aggregation is
ScatterElements(axis=0, reduction="add"), the sum of every message into its
target row, is ScatterND(reduction="add") by default: on ONNX Runtime 1.29 it
sums 1.1M messages x 16 in about 122 ms where ScatterElements(reduction="add")
takes about 806 ms (one thread). But ORT's CPU ScatterND kernel splits its
updates across the intra-op thread pool with no synchronization, so with more
than one intra-op thread updates that hit the same node race (on Cora:
different probabilities from run to run, off by up to 0.06;
microsoft/onnxruntime issues 18048 and 23396). So a ScatterND model declares
metadata max_intra_op_threads=1, which gcnserve enforces; with one thread the
kernel runs its updates in one loop, in order. --aggregation scatterelements
emits the slower form that is correct under any thread count, for runtimes
that ignore that metadata. The script checks the graph with the ONNX
checker and shape inference, then runs it through a small numpy interpreter of
exactly the ops it emits and compares with torch (max abs diff <= 1e-6); the
end-to-end proof against ONNX Runtime is the Go test that replays the golden
fixtures written by --fixtures.

Determinism: one torch thread, torch.use_deterministic_algorithms, and every
random draw seeded from --seed, so the same command writes the same bytes.
"""

import argparse
import csv
import gzip
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import networkx as nx
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

# SCRIPT_VERSION is stored in the model's metadata; bump it when the graph
# semantics or the metadata keys change, so a model file says which rules made it.
SCRIPT_VERSION = "2"  # 2: metadata "layers" and "receptive_field"

# OPSET 17 rather than 18: the installed onnx 1.12 knows schemas up to opset 17
# only, so at 17 the checker and shape inference really validate every node
# (at 18 it would silently check against the opset-17 schemas). Nothing used
# here differs between 17 and 18: ScatterElements' reduction="add" exists
# since 16 (18 only adds "min"/"max"), ReduceSum takes axes as an input since 13.
# ONNX Runtime 1.29 runs both.
OPSET = 17
IR_VERSION = 8

# PARITY_TOLERANCE is the largest max-abs difference allowed between the
# numpy interpretation of the ONNX graph and the torch module.
PARITY_TOLERANCE = 1e-6

KARATE_CLASSES = ["Mr. Hi", "Officer"]
# The karate split is fixed (not drawn from the seed) so the model card can
# name it: each club's leader (0 = Mr. Hi, 33 = the officer) plus the three
# other members of that club with the most ties train the model; the next two
# best-connected members of each club validate it (equal degree: lower id
# first); the 22 others are the test set.
KARATE_TRAIN = [0, 2, 1, 3, 33, 32, 31, 23]
KARATE_VAL = [8, 13, 27, 29]


@dataclass
class Dataset:
    """Dataset is one graph with features, labels and a train/val/test split."""

    name: str  # stored as the "dataset" metadata
    node_ids: List[str]
    features: np.ndarray  # float32 [N, F], raw (the model normalizes)
    edge_index: np.ndarray  # int64 [2, E], each link as listed in the source
    labels: np.ndarray  # int64 [N]; -1 where unknown
    train: np.ndarray  # bool [N]
    val: np.ndarray  # bool [N]
    test: np.ndarray  # bool [N]
    class_names: List[str]
    description: str = ""


class DataError(Exception):
    """DataError is a problem with the input files, reported without a traceback."""


# ---------------------------------------------------------------------------
# Data loading


def table_path(directory: str, stem: str) -> str:
    """DIR/stem.csv, else DIR/stem.csv.gz (the form the repository's test data takes)."""
    plain = os.path.join(directory, stem + ".csv")
    if os.path.exists(plain) or not os.path.exists(plain + ".gz"):
        return plain  # a missing file is reported under its plain name
    return plain + ".gz"


def open_table(path: str):
    """Opens a CSV file for csv.reader, decompressing it when it ends in .gz."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def load_csv_dataset(directory: str, class_names_arg: Optional[List[str]]) -> Dataset:
    """Reads DIR/nodes.csv (id,label,split,f0..fN) and DIR/edges.csv (source,target),
    each plain or gzip-compressed (nodes.csv.gz, edges.csv.gz)."""
    nodes_path = table_path(directory, "nodes")
    edges_path = table_path(directory, "edges")
    node_ids: List[str] = []
    raw_labels: List[str] = []
    splits: List[str] = []
    rows: List[List[str]] = []
    with open_table(nodes_path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:3] != ["id", "label", "split"] or len(header) < 4:
            raise DataError(f"{nodes_path}: header must be id,label,split,f0,...; got {header}")
        num_features = len(header) - 3
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise DataError(f"{nodes_path}:{line}: {len(row)} columns, want {len(header)}")
            node_id, label, split = row[0], row[1].strip(), row[2].strip()
            if not node_id:
                raise DataError(f"{nodes_path}:{line}: empty node id")
            if split not in ("train", "val", "test", ""):
                raise DataError(f"{nodes_path}:{line}: split {split!r}, want train, val, test or empty")
            if split and not label:
                raise DataError(f"{nodes_path}:{line}: node {node_id!r} is in split {split!r} but has no label")
            node_ids.append(node_id)
            raw_labels.append(label)
            splits.append(split)
            rows.append(row[3:])
    if not node_ids:
        raise DataError(f"{nodes_path}: no nodes")
    try:
        features = np.array(rows, dtype=np.float32)
    except ValueError as err:
        raise DataError(f"{nodes_path}: a feature is not a number: {err}") from None
    del rows
    if not np.all(np.isfinite(features)):
        raise DataError(f"{nodes_path}: features must be finite")

    index = {}
    for i, node_id in enumerate(node_ids):
        if node_id in index:
            raise DataError(f"{nodes_path}: duplicate node id {node_id!r}")
        index[node_id] = i

    labels, class_names = _resolve_labels(raw_labels, class_names_arg, nodes_path)

    sources, targets = [], []
    with open_table(edges_path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:2] != ["source", "target"]:
            raise DataError(f"{edges_path}: header must be source,target; got {header}")
        for line, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise DataError(f"{edges_path}:{line}: want source,target")
            for end in row[:2]:
                if end not in index:
                    raise DataError(f"{edges_path}:{line}: {end!r} is not a node id in nodes.csv")
            sources.append(index[row[0]])
            targets.append(index[row[1]])

    split_array = np.array(splits)
    name = os.path.basename(os.path.normpath(directory))
    return Dataset(
        name=name,
        node_ids=node_ids,
        features=features,
        edge_index=np.array([sources, targets], dtype=np.int64).reshape(2, -1),
        labels=labels,
        train=split_array == "train",
        val=split_array == "val",
        test=split_array == "test",
        class_names=class_names,
        description=f"{name}: {len(node_ids)} nodes, {len(sources)} edges, {num_features} features",
    )


def _resolve_labels(raw: List[str], names_arg: Optional[List[str]], where: str):
    """Maps label strings to class indexes: integers are indexes, anything else a name."""
    present = [s for s in raw if s]

    def is_int(s):
        try:
            int(s)
            return True
        except ValueError:
            return False

    if present and all(is_int(s) for s in present):
        if any(int(s) < 0 for s in present):
            raise DataError(f"{where}: integer labels must be >= 0")
        values = [int(s) if s else -1 for s in raw]  # -1: unlabeled
        num_classes = max(values) + 1
        if names_arg is not None:
            if len(names_arg) < num_classes:
                raise DataError(f"{where}: labels go up to {num_classes - 1}, but --class-names names {len(names_arg)} classes")
            class_names = list(names_arg)
        else:
            class_names = [str(i) for i in range(num_classes)]
        return np.array(values, dtype=np.int64), class_names

    # Class names in the file: the class order is --class-names if given,
    # else sorted, so that the same file always gives the same indexes.
    class_names = list(names_arg) if names_arg is not None else sorted(set(present))
    position = {n: i for i, n in enumerate(class_names)}
    missing = sorted(set(present) - set(position))
    if missing:
        raise DataError(f"{where}: labels {missing} are not in --class-names")
    return np.array([position[s] if s else -1 for s in raw], dtype=np.int64), class_names


def load_karate() -> Dataset:
    """Zachary's karate club: identity features, club as the label, fixed split."""
    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    labels = np.array([KARATE_CLASSES.index(graph.nodes[i]["club"]) for i in range(n)], dtype=np.int64)
    edges = [(u, v) for u, v in graph.edges()]
    train = np.zeros(n, dtype=bool)
    train[KARATE_TRAIN] = True
    val = np.zeros(n, dtype=bool)
    val[KARATE_VAL] = True
    return Dataset(
        name="karate_club (networkx karate_club_graph, Zachary 1977)",
        node_ids=[str(i) for i in range(n)],
        features=np.eye(n, dtype=np.float32),
        edge_index=np.array(edges, dtype=np.int64).T.copy(),
        labels=labels,
        train=train,
        val=val,
        test=~(train | val),
        class_names=list(KARATE_CLASSES),
        description=f"karate club: {n} members, {len(edges)} ties, identity features",
    )


# ---------------------------------------------------------------------------
# The model. normalize_features and gcn_edge_weights are the graph semantics;
# build_onnx emits the same computation node for node.


def normalize_features(x: torch.Tensor) -> torch.Tensor:
    """Row-normalizes x; all-zero rows stay zero (never inf or NaN)."""
    rowsum = x.sum(dim=1, keepdim=True)
    is_zero = rowsum == 0
    safe = torch.where(is_zero, torch.ones_like(rowsum), rowsum)
    inverse = torch.where(is_zero, torch.zeros_like(rowsum), 1.0 / safe)
    return x * inverse


@dataclass
class EdgeWeights:
    """EdgeWeights is the normalized adjacency as messages source[e] -> target[e].

    Listed self loops target the spare row num_nodes, which propagate drops;
    the one added self loop per node is not a message (propagate adds it).
    """

    source: torch.Tensor  # int64 [2E]
    target: torch.Tensor  # int64 [2E], num_nodes for listed self loops
    inv_sqrt: torch.Tensor  # float32 [N], degree^-1/2 (self loop included)


def gcn_edge_weights(edge_index: torch.Tensor, num_nodes: int) -> EdgeWeights:
    """Symmetric GCN normalization of a multigraph with one added self loop per node."""
    src, dst = edge_index[0], edge_index[1]
    is_loop = src == dst  # listed self loops weigh 0: they go to the spare row
    source = torch.cat([src, dst])
    target = torch.where(torch.cat([is_loop, is_loop]), torch.tensor(num_nodes), torch.cat([dst, src]))
    # Every degree starts at 1, the added self loop.
    degree = torch.ones(num_nodes + 1, dtype=torch.float32).index_add_(
        0, target, torch.ones(target.shape[0], dtype=torch.float32))[:num_nodes]
    # 1 / sqrt rather than pow(-0.5): both are correctly rounded in torch and
    # in ONNX Runtime, so the two agree to the last bit on the degrees.
    inv_sqrt = 1.0 / torch.sqrt(degree)
    return EdgeWeights(source, target, inv_sqrt)


def propagate(h: torch.Tensor, edges: EdgeWeights) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 h: scale rows, sum messages into targets (index_add, not dense N x N), scale again."""
    hs = h * edges.inv_sqrt[:, None]
    summed = torch.cat([hs, torch.zeros(1, h.shape[1], dtype=h.dtype)]).index_add_(0, edges.target, hs[edges.source])
    return summed[:-1] * edges.inv_sqrt[:, None]


@dataclass
class SparseRows:
    """SparseRows holds the nonzero entries of a feature matrix, for training only."""

    rows: torch.Tensor  # int64 [nnz]
    cols: torch.Tensor  # int64 [nnz]
    values: torch.Tensor  # float32 [nnz]
    num_rows: int

    @staticmethod
    def from_dense(x: torch.Tensor) -> "SparseRows":
        rows, cols = torch.nonzero(x, as_tuple=True)
        return SparseRows(rows, cols, x[rows, cols], x.shape[0])


class GCN(torch.nn.Module):
    """GCN is Kipf & Welling's 2-layer graph convolutional network over raw inputs."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        # Weights are [in, out] so they go into ONNX MatMul without a transpose.
        self.weight1 = torch.nn.Parameter(torch.empty(in_features, hidden))
        self.bias1 = torch.nn.Parameter(torch.zeros(hidden))
        self.weight2 = torch.nn.Parameter(torch.empty(hidden, num_classes))
        self.bias2 = torch.nn.Parameter(torch.zeros(num_classes))
        self.dropout = dropout
        # Glorot uniform, zero bias: Kipf's initialization. The biases are
        # trained only with --bias (train() freezes them otherwise).
        torch.nn.init.xavier_uniform_(self.weight1)
        torch.nn.init.xavier_uniform_(self.weight2)

    def project_input(self, x_normalized) -> torch.Tensor:
        """x @ weight1, with dropout on x when training (Kipf drops input features too)."""
        if isinstance(x_normalized, SparseRows):
            # Dropout only needs a draw per nonzero: zeros stay zero anyway, so
            # this is the same distribution as dense dropout, and much faster
            # on bag-of-words features (Cora: 1.3% nonzero).
            values = F.dropout(x_normalized.values, self.dropout, self.training)
            contributions = self.weight1[x_normalized.cols] * values[:, None]
            out = torch.zeros(x_normalized.num_rows, self.weight1.shape[1])
            return out.index_add_(0, x_normalized.rows, contributions)
        return F.dropout(x_normalized, self.dropout, self.training) @ self.weight1

    def logits(self, x_normalized, edges: EdgeWeights) -> torch.Tensor:
        """Logits from already normalized features (dense, or SparseRows for fast training)."""
        h = propagate(self.project_input(x_normalized), edges) + self.bias1
        h = F.relu(h)
        h = F.dropout(h, self.dropout, self.training)
        return propagate(h @ self.weight2, edges) + self.bias2

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, C] from raw features and edge_index: what the ONNX graph computes."""
        edges = gcn_edge_weights(edge_index, x.shape[0])
        return torch.softmax(self.logits(normalize_features(x), edges), dim=1)


# ---------------------------------------------------------------------------
# Training


def accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    if int(mask.sum()) == 0:
        return float("nan")
    return float((logits[mask].argmax(dim=1) == labels[mask]).float().mean())


def train(model: GCN, data: Dataset, args, verbose: bool = True) -> Dict[str, float]:
    """Trains with Kipf & Welling's recipe (see --help); returns val/test accuracy and the epochs run."""
    x = normalize_features(torch.from_numpy(data.features))
    x_sparse = SparseRows.from_dense(x)
    edges = gcn_edge_weights(torch.from_numpy(data.edge_index), len(data.node_ids))
    labels = torch.from_numpy(data.labels)
    train_mask, val_mask, test_mask = (torch.from_numpy(m) for m in (data.train, data.val, data.test))
    if int(train_mask.sum()) == 0:
        raise DataError("no training nodes (split 'train')")

    # Weight decay on the first layer's weight only, as in Kipf's code, where
    # the layers have no bias and only layer-1 variables enter the L2 loss.
    # Adam's weight_decay adds wd * w to the gradient: the gradient of Kipf's
    # wd * tf.nn.l2_loss(w) = wd * sum(w^2) / 2.
    rest = [model.weight2]
    if args.bias:
        rest += [model.bias1, model.bias2]
    else:
        # Kipf's layers have no bias: the biases stay zero (the exported
        # graph's Add of a zero bias changes nothing).
        model.bias1.requires_grad_(False)
        model.bias2.requires_grad_(False)
    optimizer = torch.optim.Adam(
        [
            {"params": [model.weight1], "weight_decay": args.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=args.lr,
    )
    has_val = int(val_mask.sum()) > 0
    window = args.early_stopping
    val_losses: List[float] = []
    epochs_run = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        optimizer.zero_grad()
        logits = model.logits(x_sparse, edges)
        loss = F.cross_entropy(logits[train_mask], labels[train_mask])
        loss.backward()
        optimizer.step()
        epochs_run = epoch

        model.eval()
        with torch.no_grad():
            logits = model.logits(x, edges)
            # Kipf's validation loss is his training objective on the val
            # nodes: cross entropy plus the layer-1 L2 term.
            val_loss = math.nan
            if has_val:
                l2 = 0.5 * args.weight_decay * float(model.weight1.pow(2).sum())
                val_loss = float(F.cross_entropy(logits[val_mask], labels[val_mask])) + l2
        val_losses.append(val_loss)
        if verbose and (epoch == 1 or epoch % 20 == 0 or epoch == args.epochs):
            print(
                f"epoch {epoch:4d}  train_loss={float(loss):.4f}  "
                f"train_acc={accuracy(logits, labels, train_mask):.4f}  "
                f"val_loss={val_loss:.4f}  val_acc={accuracy(logits, labels, val_mask):.4f}",
                flush=True,
            )
        # Kipf's rule (gcn/train.py): stop once this epoch's validation loss
        # exceeds the mean of the previous `window` epochs'. The weights of
        # the last epoch are kept, as there.
        if window > 0 and has_val and epoch > window and val_loss > np.mean(val_losses[-(window + 1):-1]):
            if verbose:
                print(f"early stop at epoch {epoch}: val_loss {val_loss:.4f} above the mean of the "
                      f"previous {window} epochs")
            break

    model.eval()
    with torch.no_grad():
        logits = model.logits(x, edges)
    return {
        "val_accuracy": accuracy(logits, labels, val_mask),
        "test_accuracy": accuracy(logits, labels, test_mask),
        "epochs": epochs_run,
    }


# ---------------------------------------------------------------------------
# ONNX export


def layers_spec() -> str:
    """The "layers" metadata: the forward pass as per-layer structure, weights
    named by initializer (gcn.LayersSpec in Go). A server may run it natively;
    it checks at load that it computes what the ONNX graph computes."""
    spec = {
        "input_norm": "row",
        "layers": [
            {"aggregation": "gcn", "weight": "conv1.weight", "bias": "conv1.bias", "activation": "relu"},
            {"aggregation": "gcn", "weight": "conv2.weight", "bias": "conv2.bias", "activation": "none"},
        ],
        "output": "softmax",
    }
    return json.dumps(spec, separators=(",", ":"))


def build_onnx(model: GCN, metadata: Dict[str, str], name: str, model_version: Optional[int], doc: str,
               aggregation: str = "scatternd", portable: bool = False) -> onnx.ModelProto:
    """Emits the GCN's forward pass (see the module docstring) as an ONNX graph.

    aggregation picks the sum-into-target-rows op: "scatternd" (fast, needs one
    intra-op thread in ONNX Runtime) or "scatterelements" (slow, any threads).
    Unless portable, the metadata also describes the layers ("layers",
    "receptive_field") so a server can run the message passing natively.
    """
    w1 = model.weight1.detach().numpy().astype(np.float32)
    b1 = model.bias1.detach().numpy().astype(np.float32)
    w2 = model.weight2.detach().numpy().astype(np.float32)
    b2 = model.bias2.detach().numpy().astype(np.float32)
    in_features, hidden = w1.shape
    num_classes = w2.shape[1]

    nodes: List[onnx.NodeProto] = []

    def op(op_type: str, inputs: Sequence[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output

    def const(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    initializers: List[onnx.TensorProto] = [
        numpy_helper.from_array(w1, "conv1.weight"),
        numpy_helper.from_array(b1, "conv1.bias"),
        numpy_helper.from_array(w2, "conv2.weight"),
        numpy_helper.from_array(b2, "conv2.bias"),
    ]
    zero_f = const("zero_f32", np.float32(0.0))
    one_f = const("one_f32", np.float32(1.0))
    zero_i = const("zero_i64", np.int64(0))
    one_i = const("one_i64", np.int64(1))
    axis0 = const("axes_0", np.array([0], dtype=np.int64))
    axis1 = const("axes_1", np.array([1], dtype=np.int64))
    zero_1d = const("zero_1d", np.array([0], dtype=np.int64))

    # 1. Row-normalize the features.
    rowsum = op("ReduceSum", ["x", axis1], "x_rowsum", keepdims=1)
    is_zero = op("Equal", [rowsum, zero_f], "x_rowsum_is_zero")
    safe = op("Where", [is_zero, one_f, rowsum], "x_rowsum_safe")
    inverse = op("Div", [one_f, safe], "x_rowsum_inverse_raw")
    inverse = op("Where", [is_zero, zero_f, inverse], "x_rowsum_inverse")
    x_norm = op("Mul", ["x", inverse], "x_normalized")

    # 2-3. Message list with reverses, and the degree normalization. Listed
    # self loops are sent to a spare row N that is dropped; the one added
    # self loop per node is the "+ hs[d]" below, not a message.
    num_nodes_1d = op("Shape", ["x"], "num_nodes_1d", start=0, end=1)  # [N]
    num_nodes = op("Squeeze", [num_nodes_1d, axis0], "num_nodes")  # scalar N
    src = op("Gather", ["edge_index", zero_i], "edge_source", axis=0)  # [E]
    dst = op("Gather", ["edge_index", one_i], "edge_target", axis=0)  # [E]
    is_loop = op("Equal", [src, dst], "edge_is_self_loop")
    msg_src = op("Concat", [src, dst], "message_source", axis=0)  # S [2E]
    msg_dst_raw = op("Concat", [dst, src], "message_target_raw", axis=0)
    msg_is_loop = op("Concat", [is_loop, is_loop], "message_is_self_loop", axis=0)
    msg_dst = op("Where", [msg_is_loop, num_nodes, msg_dst_raw], "message_target")  # D [2E]
    target_col = op("Unsqueeze", [msg_dst, axis1], "message_target_column")  # [2E, 1]
    rows_1d = op("Add", [num_nodes_1d, one_i], "rows_with_spare_1d")  # [N + 1]
    one_value = numpy_helper.from_array(np.array([1.0], dtype=np.float32))
    # Degree starts at 1 (the added self loop); each message adds 1.
    ones_rows = op("ConstantOfShape", [rows_1d], "degree_init", value=one_value)
    ones_msgs = op("ConstantOfShape", [op("Shape", [msg_dst], "messages_1d")], "message_ones", value=one_value)
    if aggregation == "scatternd":
        degree_ext = op("ScatterND", [ones_rows, target_col, ones_msgs], "degree_with_spare", reduction="add")
    else:
        degree_ext = op("ScatterElements", [ones_rows, msg_dst, ones_msgs], "degree_with_spare",
                        axis=0, reduction="add")
    degree = op("Slice", [degree_ext, zero_1d, num_nodes_1d, axis0], "degree")  # [N]
    sqrt_degree = op("Sqrt", [degree], "degree_sqrt")
    inv_sqrt = op("Div", [one_f, sqrt_degree], "degree_inv_sqrt")
    inv_sqrt_col = op("Unsqueeze", [inv_sqrt, axis1], "degree_inv_sqrt_column")  # [N, 1]

    # 4. Graph convolutions: out[d] = dinv[d] * (hs[d] + sum over messages
    # e into d of hs[S[e]]) + bias, with hs = dinv * h. Scaling rows before
    # and after the sum replaces a multiply per message. Aggregation: see the
    # module docstring for why ScatterND needs a single intra-op thread and
    # ScatterElements does not.
    def conv(prefix: str, inputs: str, out_dim: int) -> str:
        h = op("MatMul", [inputs, f"{prefix}.weight"], f"{prefix}_h")  # [N, K]
        hs = op("Mul", [h, inv_sqrt_col], f"{prefix}_h_scaled")
        messages = op("Gather", [hs, msg_src], f"{prefix}_messages", axis=0)  # [2E, K]
        spare = const(f"{prefix}_spare_row", np.zeros((1, out_dim), dtype=np.float32))
        init = op("Concat", [hs, spare], f"{prefix}_self_loops", axis=0)  # [N + 1, K]
        if aggregation == "scatternd":
            # One index per message row: [2E, 1] addresses whole rows.
            summed = op("ScatterND", [init, target_col, messages], f"{prefix}_summed_with_spare",
                        reduction="add")
        else:
            # ScatterElements wants one index per element: [2E, 1] broadcast to [2E, K].
            row_shape = const(f"{prefix}_index_shape", np.array([1, out_dim], dtype=np.int64))
            targets = op("Expand", [target_col, row_shape], f"{prefix}_message_targets")
            summed = op("ScatterElements", [init, targets, messages], f"{prefix}_summed_with_spare",
                        axis=0, reduction="add")
        summed = op("Slice", [summed, zero_1d, num_nodes_1d, axis0], f"{prefix}_summed")
        aggregated = op("Mul", [summed, inv_sqrt_col], f"{prefix}_aggregated")
        return op("Add", [aggregated, f"{prefix}.bias"], f"{prefix}_out")

    h1 = op("Relu", [conv("conv1", x_norm, hidden)], "conv1_relu")
    logits = conv("conv2", h1, num_classes)
    op("Softmax", [logits], "probabilities", axis=1)

    graph = helper.make_graph(
        nodes,
        name,
        inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["num_nodes", in_features]),
            helper.make_tensor_value_info("edge_index", TensorProto.INT64, [2, "num_edges"]),
        ],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["num_nodes", num_classes])],
        initializer=initializers,
        doc_string=doc,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="gcnserve scripts/export_onnx.py",
        producer_version=SCRIPT_VERSION,
        doc_string=doc,
    )
    proto.ir_version = IR_VERSION
    if model_version is not None:
        proto.model_version = model_version
    metadata = dict(metadata, aggregation={"scatternd": "ScatterND", "scatterelements": "ScatterElements"}[aggregation])
    if aggregation == "scatternd":
        # microsoft/onnxruntime#18048: ScatterND(reduction=add) splits its
        # updates across the intra-op pool without synchronization.
        metadata["max_intra_op_threads"] = "1"
    # Two message-passing layers: a node's output depends on its 2-hop neighbourhood.
    metadata["receptive_field"] = "2"
    if not portable:
        metadata["layers"] = layers_spec()
    helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    out_type = inferred.graph.output[0].type.tensor_type
    dims = [d.dim_param or d.dim_value for d in out_type.shape.dim]
    if dims != ["num_nodes", num_classes]:
        raise AssertionError(f"shape inference gives output dims {dims}, want ['num_nodes', {num_classes}]")
    return proto


# ---------------------------------------------------------------------------
# A numpy interpreter for exactly the ops build_onnx emits. There is no
# onnxruntime for this Python, and onnx 1.12 has no reference evaluator; this
# lets the script prove that the graph it wrote computes what torch computes.


def run_onnx_numpy(proto: onnx.ModelProto, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    values: Dict[str, np.ndarray] = dict(feeds)
    for tensor in proto.graph.initializer:
        values[tensor.name] = numpy_helper.to_array(tensor)
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ins = [values[name] for name in node.input]
        values[node.output[0]] = _numpy_op(node.op_type, ins, attrs)
    return {out.name: values[out.name] for out in proto.graph.output}


def _numpy_op(op_type: str, ins: List[np.ndarray], attrs: dict) -> np.ndarray:
    if op_type == "ReduceSum":
        return ins[0].sum(axis=tuple(int(a) for a in ins[1]), keepdims=bool(attrs.get("keepdims", 1)))
    if op_type == "Equal":
        return np.equal(ins[0], ins[1])
    if op_type == "Slice":
        data, starts, ends, axes = ins[0], ins[1], ins[2], ins[3]
        index = [slice(None)] * data.ndim
        for a, b, e in zip(axes, starts, ends):
            index[int(a)] = slice(int(b), int(e))
        return data[tuple(index)].copy()
    if op_type == "Where":
        return np.where(ins[0], ins[1], ins[2])
    if op_type == "Div":
        return np.divide(ins[0], ins[1])
    if op_type == "Mul":
        return np.multiply(ins[0], ins[1])
    if op_type == "Add":
        return np.add(ins[0], ins[1])
    if op_type == "Sqrt":
        return np.sqrt(ins[0])
    if op_type == "Not":
        return np.logical_not(ins[0])
    if op_type == "Relu":
        return np.maximum(ins[0], np.zeros((), dtype=ins[0].dtype))
    if op_type == "MatMul":
        return np.matmul(ins[0], ins[1])
    if op_type == "Shape":
        shape = np.array(ins[0].shape, dtype=np.int64)
        return shape[attrs.get("start", 0):attrs.get("end", len(shape))]
    if op_type == "Squeeze":
        return np.squeeze(ins[0], axis=tuple(int(a) for a in ins[1]))
    if op_type == "Unsqueeze":
        return np.expand_dims(ins[0], axis=tuple(int(a) for a in ins[1]))
    if op_type == "Gather":
        return np.take(ins[0], ins[1], axis=attrs.get("axis", 0))
    if op_type == "Range":
        return np.arange(ins[0], ins[1], ins[2], dtype=ins[0].dtype)
    if op_type == "Concat":
        return np.concatenate(ins, axis=attrs["axis"])
    if op_type == "Cast":
        to = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[attrs["to"]]
        return ins[0].astype(to)
    if op_type == "ConstantOfShape":
        value = numpy_helper.to_array(attrs["value"])
        return np.full(tuple(int(d) for d in ins[0]), value[0], dtype=value.dtype)
    if op_type == "ScatterElements":
        if attrs.get("reduction", b"none") not in (b"add", "add"):
            raise NotImplementedError("ScatterElements without reduction='add'")
        out = ins[0].copy()
        axis = attrs.get("axis", 0)
        # out[..., indices[i, j, ...] (at axis), ...] += updates[i, j, ...], duplicates summed.
        position = list(np.indices(ins[1].shape))
        position[axis] = ins[1]
        np.add.at(out, tuple(position), ins[2])
        return out
    if op_type == "ScatterND":
        if attrs.get("reduction", b"none") not in (b"add", "add") or ins[1].shape[-1] != 1:
            raise NotImplementedError("ScatterND other than reduction='add' with [M, 1] indices")
        out = ins[0].copy()
        np.add.at(out, ins[1][:, 0], ins[2])
        return out
    if op_type == "Expand":
        shape = np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1]))
        return np.broadcast_to(ins[0], shape).copy()
    if op_type == "Softmax":
        axis = attrs.get("axis", -1)
        shifted = ins[0] - ins[0].max(axis=axis, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=axis, keepdims=True)
    raise NotImplementedError(f"numpy interpreter has no {op_type}")


def torch_probabilities(model: GCN, features: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(features), torch.from_numpy(edge_index)).numpy()


# ---------------------------------------------------------------------------
# Request graphs: the golden fixture cases and the parity cases.


@dataclass
class Case:
    """Case is one request graph: node ids, raw features and edges by node index."""

    name: str
    node_ids: List[str]
    features: np.ndarray  # float32 [N, F]
    edges: List[tuple]  # (source index, target index), in request order

    @property
    def edge_index(self) -> np.ndarray:
        return np.array(self.edges, dtype=np.int64).reshape(-1, 2).T.copy()


def random_features(rng: np.random.Generator, n: int, f: int) -> np.ndarray:
    """Nonnegative sparse-ish features: like bag-of-words, with non-trivial row sums."""
    values = rng.random((n, f), dtype=np.float32)
    values[rng.random((n, f)) < 0.5] = 0.0
    return values


def small_cases(in_features: int, seed: int) -> List[Case]:
    """Small graphs that pin down the graph semantics at the edges of the contract."""
    rng = np.random.default_rng(seed + 1000)
    cases = []

    ids = [f"v{i}" for i in range(5)]
    # (0,1) listed twice and (1,0) once: weight 3 on link 0-1; 1-2 listed both ways: weight 2.
    cases.append(Case("duplicate_edges", ids, random_features(rng, 5, in_features),
                      [(0, 1), (0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 4)]))

    ids = [f"v{i}" for i in range(4)]
    cases.append(Case("self_loops", ids, random_features(rng, 4, in_features),
                      [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (3, 3), (3, 3)]))

    ids = ["linked-a", "linked-b", "alone", "zero-features", "alone-too"]
    features = random_features(rng, 5, in_features)
    features[3] = 0.0  # an all-zero row must stay zero, not become NaN
    cases.append(Case("isolated_nodes", ids, features, [(0, 1)]))

    ids = ["hub"] + [f"leaf{i}" for i in range(1, 33)]
    edges = [(0, i) for i in range(1, 33)] + [(1, 2), (5, 6)]
    cases.append(Case("hub", ids, random_features(rng, 33, in_features), edges))

    cases.append(Case("one_node", ["only"], random_features(rng, 1, in_features), []))
    cases.append(Case("two_nodes", ["left", "right"], random_features(rng, 2, in_features), [(0, 1)]))
    return cases


def dataset_case(name: str, data: Dataset) -> Case:
    return Case(name, list(data.node_ids), data.features, [tuple(e) for e in data.edge_index.T.tolist()])


def fixture_cases(data: Optional[Dataset], in_features: int, seed: int, karate: bool) -> List[Case]:
    if karate:
        return [dataset_case("karate", data)] + small_cases(in_features, seed)
    if data is not None:
        # The dataset's own first nodes, with their real features.
        return [
            dataset_case("whole_graph", data),
            Case("one_node", data.node_ids[:1], data.features[:1], []),
            Case("two_nodes", data.node_ids[:2], data.features[:2], [(0, 1)]),
        ]
    return small_cases(in_features, seed)


def stress_cases(in_features: int, seed: int) -> List[Case]:
    """Random multigraphs with duplicates, self loops and isolated nodes, for parity only."""
    rng = np.random.default_rng(seed + 2000)
    cases = []
    for k, (n, e) in enumerate([(1, 0), (1, 3), (7, 0), (10, 40), (50, 200), (200, 50)]):
        features = random_features(rng, n, in_features) * rng.integers(1, 5, size=(n, 1)).astype(np.float32)
        if n > 2:
            features[rng.integers(0, n)] = 0.0
        edges = [tuple(p) for p in rng.integers(0, n, size=(e, 2)).tolist()]
        edges += edges[: e // 4]  # explicit duplicates
        edges += [(v, u) for u, v in edges[: e // 5]]  # reverses of listed links
        cases.append(Case(f"random_{k}_n{n}_e{len(edges)}", [f"r{i}" for i in range(n)], features, edges))
    return cases


def random_case(spec: str, in_features: int, seed: int) -> Case:
    """--fixture-random N,E: a random multigraph of N nodes and E edges."""
    n, e = (int(v) for v in spec.split(","))
    rng = np.random.default_rng(seed + 3000)
    features = random_features(rng, n, in_features)
    pairs = rng.integers(0, n, size=(e, 2))
    return Case(f"random_{n}_{e}", [f"n{i}" for i in range(n)], features, list(map(tuple, pairs.tolist())))


def union_case(cases: List[Case]) -> Case:
    """The disjoint union of cases, as a batching server would build it."""
    ids, features, edges, offset = [], [], [], 0
    for c in cases:
        ids += [f"{c.name}/{i}" for i in c.node_ids]
        features.append(c.features)
        edges += [(u + offset, v + offset) for u, v in c.edges]
        offset += len(c.node_ids)
    return Case("union", ids, np.concatenate(features), edges)


def check_parity(model: GCN, proto: onnx.ModelProto, cases: List[Case]) -> float:
    """Compares the numpy-interpreted ONNX graph with torch on every case; returns the max diff."""
    worst = 0.0
    for case in cases:
        want = torch_probabilities(model, case.features, case.edge_index)
        got = run_onnx_numpy(proto, {"x": case.features, "edge_index": case.edge_index})["probabilities"]
        if got.shape != want.shape or got.dtype != np.float32:
            raise AssertionError(f"parity {case.name}: onnx gives {got.dtype}{got.shape}, torch {want.dtype}{want.shape}")
        if not np.all(np.isfinite(got)):
            raise AssertionError(f"parity {case.name}: onnx output has NaN or inf")
        diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
        print(f"parity {case.name:24s} nodes={len(case.node_ids):5d} edges={len(case.edges):6d} max_abs_diff={diff:.3g}")
        worst = max(worst, diff)
    # Batchable: each graph in a disjoint union gets its standalone result.
    small = [c for c in cases if len(c.node_ids) <= 300]
    union = union_case(small)
    together = torch_probabilities(model, union.features, union.edge_index)
    offset, union_diff = 0, 0.0
    for c in small:
        alone = torch_probabilities(model, c.features, c.edge_index)
        part = together[offset:offset + len(c.node_ids)]
        union_diff = max(union_diff, float(np.max(np.abs(part.astype(np.float64) - alone))))
        offset += len(c.node_ids)
    print(f"parity batchable union of {len(small)} graphs: max_abs_diff vs standalone={union_diff:.3g}")
    worst = max(worst, union_diff)
    if worst > PARITY_TOLERANCE:
        raise AssertionError(f"parity: max abs diff {worst:.3g} exceeds {PARITY_TOLERANCE}")
    return worst


# ---------------------------------------------------------------------------
# JSON output: protojson GraphData requests and golden fixtures.


def json_number(value) -> object:
    """A float32 as JSON: integral values as ints (keeps big requests small),
    others as the shortest repr that parses back to the same float32."""
    v = float(np.float32(value))
    if v.is_integer() and abs(v) < 2**24:
        return int(v)
    return v


def request_json(case: Case) -> dict:
    """GraphData in protojson form (field names in lowerCamelCase)."""
    return {
        "nodes": [
            {"id": node_id, "features": [json_number(v) for v in row]}
            for node_id, row in zip(case.node_ids, case.features.tolist())
        ],
        "edges": [{"sourceId": case.node_ids[u], "targetId": case.node_ids[v]} for u, v in case.edges],
    }


def dumps_readable(value, indent: int = 0) -> str:
    """JSON with one node, edge or probability row per line: diffable, yet compact."""
    def flat(v):
        if isinstance(v, dict):
            return all(flat(x) for x in v.values()) and not any(
                isinstance(x, list) and any(isinstance(y, (list, dict)) for y in x) for x in v.values())
        if isinstance(v, list):
            return all(not isinstance(x, (list, dict)) for x in v)
        return True

    if flat(value):
        # No spaces inside a line: a whole-graph Cora request is 2708 x 1433
        # mostly-zero features, and "0," instead of "0, " saves a third.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    pad = " " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps_readable(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + dumps_readable(v, indent + 1) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def write_text(path: str, text: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def write_fixture(directory: str, case: Case, model: GCN, score_class: Optional[int]) -> str:
    probabilities = torch_probabilities(model, case.features, case.edge_index)
    class_index = probabilities.argmax(axis=1)  # np.argmax: the lowest index wins a tie
    if score_class is not None:
        scores = probabilities[:, score_class]
    else:
        scores = probabilities[np.arange(len(class_index)), class_index]
    fixture = {
        "name": case.name,
        "request": request_json(case),
        "probabilities": [[float(p) for p in row] for row in probabilities],
        "scores": [float(s) for s in scores],
        "class_index": [int(c) for c in class_index],
    }
    path = os.path.join(directory, case.name + ".json")
    write_text(path, dumps_readable(fixture))
    return path


# ---------------------------------------------------------------------------
# CLI


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_onnx.py",
        description="Train Kipf & Welling's 2-layer GCN in PyTorch and export it to ONNX for gcnserve. "
                    "The model takes raw features x [N,F] and edge_index [2,E] and returns class "
                    "probabilities [N,C]; see the script's docstring for the exact graph semantics. "
                    "The last stdout line is test_accuracy=0.XXXX (test_accuracy=nan for --random-init; "
                    "the mean over seeds for --seeds).",
        epilog="Training is Kipf & Welling's recipe (ICLR 2017, section 5.2 and their gcn/train.py), so that "
               "the defaults reproduce the paper (Cora 81.5%, Citeseer 70.3%): Glorot-uniform weights; "
               "row-normalized features; symmetric normalized adjacency with self loops; full-batch "
               "training, cross entropy on the train nodes; dropout 0.5 on the input features and on the "
               "hidden layer; L2 weight decay 5e-4 on the first layer's weight only; Adam, learning rate "
               "0.01; up to 200 epochs, early stopping on the validation loss with a window of 10; no bias "
               "in the layers (as in Kipf's code).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_argument_group("data source (exactly one)")
    exclusive = source.add_mutually_exclusive_group(required=True)
    exclusive.add_argument("--data", metavar="DIR",
                           help="directory with nodes.csv (id,label,split,f0..fN; split train|val|test|empty; "
                                "label an integer class index or a class name) and edges.csv (source,target), "
                                "each plain or gzip-compressed (nodes.csv.gz, edges.csv.gz)")
    exclusive.add_argument("--karate", action="store_true",
                           help="networkx's karate club: identity features, classes 'Mr. Hi'/'Officer', "
                                f"train nodes {KARATE_TRAIN}, val nodes {KARATE_VAL}, test the other 22")
    exclusive.add_argument("--random-init", action="store_true",
                           help="no training: an untrained model of shape --features/--classes, for benchmarks")
    source.add_argument("--features", type=int, help="feature dimension F (--random-init only)")
    source.add_argument("--classes", type=int, help="number of classes C (--random-init only)")
    source.add_argument("--class-names", metavar="A,B,C",
                        help="comma-separated class names in class-index order (default: the label names "
                             "sorted, or '0'..'C-1' for integer labels)")

    knobs = parser.add_argument_group("training (defaults: Kipf & Welling 2017, see below)")
    knobs.add_argument("--hidden", type=int, default=16, help="hidden units (paper: 16)")
    knobs.add_argument("--dropout", type=float, default=0.5,
                       help="dropout rate, applied during training to the input features and to the hidden "
                            "layer (paper: 0.5 on both)")
    knobs.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (paper: Adam, 0.01)")
    knobs.add_argument("--weight-decay", type=float, default=5e-4,
                       help="L2 weight decay on the first layer's weight only (paper: 5e-4 on the first "
                            "layer; Kipf's code adds weight_decay * sum(w^2) / 2 to the loss)")
    knobs.add_argument("--epochs", type=int, default=200, help="most training epochs (paper: 200)")
    knobs.add_argument("--early-stopping", type=int, default=10, metavar="WINDOW",
                       help="stop once an epoch's validation loss (cross entropy + the L2 term) exceeds the "
                            "mean of the previous WINDOW epochs', keeping the last weights: Kipf's rule "
                            "(paper: window 10); 0 trains all --epochs")
    knobs.add_argument("--bias", action="store_true",
                       help="train a bias per layer (zero-initialized, no weight decay), as PyTorch Geometric's "
                            "GCNConv has. Off by default, as in Kipf's code: with biases on Cora, early "
                            "stopping fires 40-90 epochs sooner and test accuracy drops about 1 point")
    knobs.add_argument("--seed", type=int, default=0, help="seed for torch and numpy (weights and dropout)")
    knobs.add_argument("--seeds", type=int, metavar="N",
                       help="evaluate the recipe instead of exporting: train N models with seeds --seed .. "
                            "--seed+N-1, print each one's line 'seed=S epochs=E val_accuracy=V "
                            "test_accuracy=T' and then the mean; writes no files")

    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="FILE.onnx", help="ONNX model file to write (required unless --seeds)")
    out.add_argument("--name", help="model_name metadata and graph name (default: gcn-<dataset>)")
    out.add_argument("--model-version", default="1", help="model_version metadata (an integer also sets the ONNX model_version)")
    out.add_argument("--score-class", metavar="NAME",
                     help="class whose probability node_scores carries (default: 'Mr. Hi' for --karate, "
                          "else none: the top class's probability)")
    out.add_argument("--aggregation", choices=["scatternd", "scatterelements"], default="scatternd",
                     help="ONNX op that sums messages into their target nodes. scatternd (default): "
                          "ScatterND(reduction=add), about 7x faster, but ONNX Runtime's CPU kernel races when "
                          "run with more than one intra-op thread, so the model declares "
                          "max_intra_op_threads=1 (gcnserve honours it). scatterelements: "
                          "ScatterElements(reduction=add), correct with any thread count, slower")
    out.add_argument("--portable", action="store_true",
                     help="omit the 'layers' metadata (the per-layer description a server may run natively), "
                          "so the model runs as the plain ONNX graph only")
    out.add_argument("--fixtures", metavar="DIR",
                     help="write golden fixtures DIR/<case>.json from PyTorch: for --karate the karate graph "
                          "and small edge cases; for --data whole_graph (large), one_node and two_nodes")
    out.add_argument("--fixture-random", metavar="N,E",
                     help="with --fixtures, also write fixture random_N_E: N nodes with random sparse "
                          "features and E random edges (duplicates and self loops as chance gives them), "
                          "drawn from --seed; for parity on large graphs")
    out.add_argument("--example-request", metavar="FILE",
                     help="write the training graph as a protojson GraphData request (for gcnclient)")
    args = parser.parse_args(argv)

    if args.random_init:
        if args.features is None or args.classes is None:
            parser.error("--random-init needs --features and --classes")
        if args.features < 1 or args.classes < 1:
            parser.error("--features and --classes must be >= 1")
        if args.example_request:
            parser.error("--example-request needs a graph: use --karate or --data")
    elif args.features is not None or args.classes is not None:
        parser.error("--features and --classes only apply to --random-init")
    if args.hidden < 1 or args.epochs < 0 or args.early_stopping < 0 or not 0 <= args.dropout < 1:
        parser.error("--hidden >= 1, --epochs >= 0, --early-stopping >= 0 and 0 <= --dropout < 1 are required")
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error("--seeds must be >= 1")
        if args.random_init:
            parser.error("--seeds needs training data: use --karate or --data")
        if args.out or args.fixtures or args.example_request:
            parser.error("--seeds writes no files: drop --out, --fixtures and --example-request")
    elif not args.out:
        parser.error("--out is required (unless --seeds)")
    return args


def format_accuracy(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def evaluate_seeds(data: Dataset, class_names: List[str], args) -> int:
    """Trains one model per seed and prints each seed's accuracy and the mean (--seeds)."""
    tests, vals = [], []
    for seed in range(args.seed, args.seed + args.seeds):
        # The same draws as a single run with --seed seed: that run's model
        # is the one this line measures.
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = GCN(data.features.shape[1], args.hidden, len(class_names), args.dropout)
        results = train(model, data, args, verbose=False)
        tests.append(results["test_accuracy"])
        vals.append(results["val_accuracy"])
        print(f"seed={seed} epochs={results['epochs']} val_accuracy={format_accuracy(results['val_accuracy'])} "
              f"test_accuracy={format_accuracy(results['test_accuracy'])}", flush=True)
    mean = float(np.mean(tests))
    print(f"seeds={args.seeds} mean_val_accuracy={format_accuracy(float(np.mean(vals)))} "
          f"min_test_accuracy={format_accuracy(min(tests))} max_test_accuracy={format_accuracy(max(tests))}")
    print(f"test_accuracy={format_accuracy(mean)}")
    return 0


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # deterministic sums, and polite on a shared machine
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    class_names_arg = [s.strip() for s in args.class_names.split(",")] if args.class_names else None
    try:
        if args.karate:
            data = load_karate()
            if class_names_arg is not None and len(class_names_arg) != 2:
                raise DataError("--class-names for --karate must name 2 classes")
            if class_names_arg is not None:
                data.class_names = class_names_arg
        elif args.data:
            data = load_csv_dataset(args.data, class_names_arg)
        else:
            data = None
    except (DataError, OSError) as err:
        print(f"export_onnx.py: {err}", file=sys.stderr)
        return 2

    if data is not None:
        in_features, class_names = data.features.shape[1], data.class_names
        print(f"data: {data.description}; classes {class_names}; "
              f"split train={int(data.train.sum())} val={int(data.val.sum())} test={int(data.test.sum())}")
    else:
        in_features = args.features
        class_names = class_names_arg or [str(i) for i in range(args.classes)]
        if len(class_names) != args.classes:
            print(f"export_onnx.py: --class-names names {len(class_names)} classes, --classes is {args.classes}", file=sys.stderr)
            return 2
    if len(set(class_names)) != len(class_names) or any(not n for n in class_names):
        print(f"export_onnx.py: class names must be unique and non-empty: {class_names}", file=sys.stderr)
        return 2

    score_class_name = args.score_class if args.score_class is not None else ("Mr. Hi" if args.karate else None)
    score_class = None
    if score_class_name is not None:
        if score_class_name not in class_names:
            print(f"export_onnx.py: --score-class {score_class_name!r} is not a class ({class_names})", file=sys.stderr)
            return 2
        score_class = class_names.index(score_class_name)

    if args.seeds is not None:
        return evaluate_seeds(data, class_names, args)

    model = GCN(in_features, args.hidden, len(class_names), args.dropout)
    if data is not None:
        results = train(model, data, args)
        print(f"val_accuracy={format_accuracy(results['val_accuracy'])}")
    else:
        results = {"val_accuracy": math.nan, "test_accuracy": math.nan, "epochs": 0}
        print("random init: no training, no accuracy")
    model.eval()

    if args.karate:
        dataset_name, default_name = "karate_club", "gcn-karate"
        score_meaning = "probability that the member sides with Mr. Hi (the instructor)" \
            if score_class_name == "Mr. Hi" else None
    elif data is not None:
        dataset_name = data.name
        default_name = f"gcn-{data.name}"
        score_meaning = None
    else:
        dataset_name, default_name, score_meaning = "none (random init)", f"gcn-random-f{in_features}-c{len(class_names)}", None
    if score_meaning is None:
        score_meaning = (f"probability of class {score_class_name!r}" if score_class_name is not None
                         else "probability of the predicted (top) class")
    name = args.name or default_name

    metadata = {
        "model_name": name,
        "model_version": str(args.model_version),
        "feature_dim": str(in_features),
        "num_classes": str(len(class_names)),
        "class_names": json.dumps(class_names, ensure_ascii=False),
        "score_meaning": score_meaning,
        "output_kind": "probabilities",
        "dataset": dataset_name,
        "training_seed": str(args.seed),
        "script_version": SCRIPT_VERSION,
        "batchable": "true",
        "graph_semantics": (
            "inputs raw: x float32 [N,F], edge_index int64 [2,E] (row 0 source, row 1 target); "
            "features row-normalized inside the model (all-zero rows stay 0); "
            "each listed edge u!=v is one undirected link (reverse added); listed self loops are ignored "
            "and one self loop of weight 1 is added per node; duplicate listings add up (multigraph); "
            "symmetric normalization D^-1/2 (A+I) D^-1/2; 2 GCN layers, ReLU, softmax over classes"
        ),
        "hidden": str(args.hidden),
        "epochs": str(results["epochs"]),
        "torch_version": torch.__version__,
        "created_by": "scripts/export_onnx.py " + shlex.join(argv),
    }
    if score_class_name is not None:
        metadata["score_class"] = score_class_name
    if data is not None:
        metadata["test_accuracy"] = format_accuracy(results["test_accuracy"])
        metadata["val_accuracy"] = format_accuracy(results["val_accuracy"])
    metadata = {k: v for k, v in metadata.items() if v != "nan"}

    try:
        model_version = int(args.model_version)
    except ValueError:
        model_version = None
    doc = (f"{name}: 2-layer GCN (Kipf & Welling 2017), {in_features} features -> {args.hidden} hidden -> "
           f"{len(class_names)} classes {class_names}; trained on {dataset_name}. "
           f"Inputs x [num_nodes,{in_features}] float32 and edge_index [2,num_edges] int64 (raw), "
           f"output probabilities [num_nodes,{len(class_names)}]. See metadata graph_semantics.")
    proto = build_onnx(model, metadata, name, model_version, doc, args.aggregation, args.portable)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    onnx.save(proto, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, opset {OPSET}, {len(proto.graph.node)} nodes)")

    cases = fixture_cases(data, in_features, args.seed, args.karate)
    check_parity(model, proto, cases + stress_cases(in_features, args.seed))

    if args.fixtures and args.fixture_random:
        cases = cases + [random_case(args.fixture_random, in_features, args.seed)]
    if args.fixtures:
        for case in cases:
            path = write_fixture(args.fixtures, case, model, score_class)
            print(f"wrote fixture {path} ({os.path.getsize(path)} bytes)")
    if args.example_request:
        write_text(args.example_request, dumps_readable(request_json(dataset_case("request", data))))
        print(f"wrote example request {args.example_request}")

    if data is not None:
        print(f"val_accuracy={format_accuracy(results['val_accuracy'])} "
              f"(val nodes: {int(data.val.sum())}, test nodes: {int(data.test.sum())})")
    print(f"test_accuracy={format_accuracy(results['test_accuracy'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
