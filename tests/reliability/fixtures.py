"""Good inputs the hostile corpus is derived from, built in code (tiny, fast).

`build_world(root)` writes, under `root/inputs/`:
  model.onnx      a tiny MNIST-shaped CNN built with onnx.helper (no torch): Conv 1->16, Relu, Conv 16->16, Relu,
                  GlobalAveragePool, Flatten, Gemm 16->10 (prunable, quantizable)
  calib.npz       8 real MNIST calibration samples (key `input`, with labels)
  eval.npz        8 real MNIST eval samples (with labels)
  train.npz       32 real MNIST training samples (with labels) for distill
  nets.py         torch factories `tiny` (teacher) and `small` (student), 1x28x28 only (Flatten -> Linear)
  tiny.pt         a weights_only-safe state dict for `nets.py:tiny`
  recipe.toml     a small recipe (onnx model source) for convert, once the pipeline lands
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"
OPSET = 17

NETS_PY = '''
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))


def small():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 13 * 13, 10))
'''


@dataclass
class World:
    root: Path
    inputs: Path
    model: Path
    calib: Path
    eval: Path
    train: Path
    nets: Path
    weights: Path
    extra: dict = field(default_factory=dict)

    @property
    def teacher(self) -> str:
        return f"{self.nets}:tiny"

    @property
    def student(self) -> str:
        return f"{self.nets}:small"


def cnn_graph(*, in_shape=(1, 1, 28, 28), c1: int = 16, seed: int = 0, dim_params: bool = False,
              opset: int = OPSET, ir_version: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def init(name, shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w1", (c1, 1, 3, 3)), init("b1", (c1,), 0.05), init("w2", (c1, c1, 3, 3), 0.1),
             init("b2", (c1,), 0.05), init("wf", (10, c1)), init("bf", (10,), 0.05)]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    if dim_params:
        in_dims: list = ["N", "C", "H", "W"]
        out_dims: list = ["N", "K"]
    else:
        in_dims = list(in_shape)
        out_dims = [in_shape[0], 10]
    graph = helper.make_graph(nodes, "tiny_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_dims)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="reliability-tests")
    model.ir_version = ir_version
    return model


def _subset(src: Path, dest: Path, n: int) -> None:
    with np.load(src) as z:
        np.savez(dest, input=z["input"][:n].astype(np.float32), labels=z["labels"][:n].astype(np.int64))


def build_world(root: Path) -> World:
    inputs = root / "inputs"
    inputs.mkdir(parents=True)
    model = inputs / "model.onnx"
    m = cnn_graph()
    onnx.checker.check_model(m)
    model.write_bytes(m.SerializeToString())
    calib, ev, train = inputs / "calib.npz", inputs / "eval.npz", inputs / "train.npz"
    _subset(DATA / "mnist_calibration.npz", calib, 8)
    _subset(DATA / "mnist_eval.npz", ev, 8)
    _subset(DATA / "mnist_train.npz", train, 32)
    nets = inputs / "nets.py"
    nets.write_text(NETS_PY)
    weights = inputs / "tiny.pt"
    import torch

    sys.path.insert(0, str(inputs))
    try:
        ns: dict = {}
        exec(compile(NETS_PY, str(nets), "exec"), ns)  # noqa: S102 - our own factory text
        torch.save(ns["tiny"]().state_dict(), weights)
    finally:
        sys.path.remove(str(inputs))
    return World(root=root, inputs=inputs, model=model, calib=calib, eval=ev, train=train, nets=nets,
                 weights=weights)
