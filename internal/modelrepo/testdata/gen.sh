#!/usr/bin/env bash
# Regenerates the model fixtures of internal/modelrepo and test/reload from the
# repository root: distinct versions of two models (different weights, so
# their scores differ) and a model that breaks the contract. Deterministic:
# the same command writes the same bytes.
#   internal/modelrepo/testdata/gen.sh
set -euo pipefail
PY=${PYTHON:-/usr/bin/python3}
out=internal/modelrepo/testdata
for seed in 1 2 3; do
  # karate retrained with another seed: a believable "next version".
  "$PY" scripts/export_onnx.py --karate --seed "$seed" --name karate --model-version "$((seed + 1))" \
    --out "$out/karate_seed$seed.onnx" >/dev/null
done
# PyTorch's scores for seed 1 (test/e2e compares a switched server to them).
"$PY" scripts/export_onnx.py --karate --seed 1 --name karate --model-version 2 \
  --out "$out/karate_seed1.onnx" --fixtures "$out/karate_seed1_fixtures" >/dev/null
find "$out/karate_seed1_fixtures" -name '*.json' ! -name karate.json -delete
# A second model with another F (1433) and C (7), untrained.
"$PY" scripts/export_onnx.py --random-init --features 1433 --classes 7 --seed 1 --name cora --model-version 2 \
  --out "$out/cora_random1.onnx" >/dev/null
# A valid ONNX model that breaks the contract: one input "x", no edge_index.
"$PY" - "$out/bad_contract.onnx" <<'PY'
import sys, onnx
from onnx import helper, TensorProto
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 34])
y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 34])
g = helper.make_graph([helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)], "bad_contract", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="gen.sh")
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, sys.argv[1])
PY
ls -l "$out"/*.onnx
