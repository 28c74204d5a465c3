"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization") on an ONNX graph.

For a pair Conv1 -> [Relu] -> Conv2 where Conv1's output feeds only Conv2, output channel i of Conv1 is divided
by s_i and the matching input channel of Conv2 multiplied by s_i, with s_i = sqrt(r1_i / r2_i) (r = per-channel
weight range). ReLU is positively homogeneous, so the function is unchanged, while the per-channel weight ranges
of both convs become equal: per-tensor quantization of depthwise convs no longer wipes out small channels.
Pairs through Clip (ReLU6) are not scale-equivariant and are left alone (reported).

Runs on the pre-processed graph, where BatchNorm is already folded into the convs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from ..onnxgraph.census import attr, consumers

PASSTHROUGH = ("Relu",)


@dataclass
class EqualizeResult:
    pairs: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.pairs > 0


def has_depthwise(model: onnx.ModelProto) -> bool:
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits:
            g = attr(n, "group", 1)
            if g > 1 and inits[n.input[1]].dims[1] == 1:
                return True
    return False


def _pairs(model: onnx.ModelProto, inits: dict[str, np.ndarray], result: EqualizeResult):
    g = model.graph
    readers = consumers(g)
    outputs = {o.name for o in g.output}

    def used_once(name: str) -> bool:
        return len(readers.get(name, [])) == 1

    def skip(reason: str) -> None:
        result.skipped[reason] = result.skipped.get(reason, 0) + 1

    for c1 in g.node:
        if c1.op_type != "Conv" or len(c1.input) < 2 or c1.input[1] not in inits or not used_once(c1.input[1]):
            continue
        y = c1.output[0]
        nxt = readers.get(y, [])
        if y in outputs or len(nxt) != 1:
            continue
        mid = None
        if nxt[0].op_type in PASSTHROUGH:
            mid = nxt[0]
            if mid.output[0] in outputs:
                continue
            nxt = readers.get(mid.output[0], [])
            if len(nxt) != 1:
                continue
        elif nxt[0].op_type == "Clip" and nxt[0].output[0] in {i for c in readers.get(nxt[0].output[0], [])
                                                              if c.op_type == "Conv" for i in c.input}:
            skip("pair through Clip (ReLU6) is not scale-equivariant")
            continue
        c2 = nxt[0]
        if c2.op_type != "Conv" or len(c2.input) < 2 or c2.input[1] not in inits or not used_once(c2.input[1]):
            continue
        w1, w2 = inits[c1.input[1]], inits[c2.input[1]]
        ch = w1.shape[0]
        g2 = attr(c2, "group", 1)
        if g2 == 1 and w2.shape[1] == ch:
            kind = "dense"
        elif g2 == ch and w2.shape[0] == ch and w2.shape[1] == 1:
            kind = "depthwise"
        else:
            skip("grouped conv pair with mismatched channels")
            continue
        if len(c1.input) > 2 and c1.input[2] and (c1.input[2] not in inits or not used_once(c1.input[2])):
            continue
        yield c1, c2, kind


def float_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of `model` to rescale, and its float initializers as float32 arrays (edited in place by the caller)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out, {t.name: numpy_helper.to_array(t).astype(np.float32) for t in out.graph.initializer
                 if t.data_type == onnx.TensorProto.FLOAT}


def write_back(model: onnx.ModelProto, inits: dict[str, np.ndarray], touched: set[str]) -> None:
    """Store the edited arrays of the initializers named in `touched` into `model`."""
    for t in model.graph.initializer:
        if t.name in touched:
            t.CopyFrom(numpy_helper.from_array(inits[t.name].astype(np.float32), t.name))


def equalize(model: onnx.ModelProto, *, iterations: int = 6) -> tuple[onnx.ModelProto, EqualizeResult]:
    """A copy of `model` with cross-layer equalization applied to every eligible Conv pair."""
    out, inits = float_copy(model)
    result = EqualizeResult()
    pairs = list(_pairs(out, inits, result))
    result.pairs = len(pairs)
    touched: set[str] = set()
    for _ in range(iterations):
        for c1, c2, kind in pairs:
            w1, w2 = inits[c1.input[1]], inits[c2.input[1]]
            r1 = np.abs(w1.reshape(w1.shape[0], -1)).max(1)
            r2 = (np.abs(np.moveaxis(w2, 1, 0).reshape(w2.shape[1], -1)).max(1) if kind == "dense"
                  else np.abs(w2.reshape(w2.shape[0], -1)).max(1))
            ok = (r1 > 1e-12) & (r2 > 1e-12)
            s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0).astype(np.float32)
            s = np.clip(s, 1e-4, 1e4)
            shape1 = (-1,) + (1,) * (w1.ndim - 1)
            inits[c1.input[1]] = w1 / s.reshape(shape1)
            if len(c1.input) > 2 and c1.input[2]:
                inits[c1.input[2]] = inits[c1.input[2]] / s
                touched.add(c1.input[2])
            if kind == "dense":
                inits[c2.input[1]] = w2 * s.reshape((1, -1) + (1,) * (w2.ndim - 2))
            else:
                inits[c2.input[1]] = w2 * s.reshape((-1,) + (1,) * (w2.ndim - 1))
            touched.update((c1.input[1], c2.input[1]))
    write_back(out, inits, touched)
    return out, result
