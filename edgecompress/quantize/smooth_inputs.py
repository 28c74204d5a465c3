"""SmoothQuant for the inputs of MatMul / Gemm layers (Xiao et al. 2023), as an exact graph rewrite.

Transformer activations have a few channels far larger than the rest (the zoo's MiniLM: LayerNorm outputs and
GELU outputs), and int8 activations are quantized per tensor, so those channels take the range. For a tensor X
read by MatMuls with constant weights W (X @ W, W of shape [K, N]), X's channel k can be divided by s_k and W's
row k multiplied by it: X @ W = (X / s) @ (diag(s) W). The division is one Mul inserted after X and read by those
MatMuls only (other readers, such as the residual Add beside a LayerNorm, keep reading X), so nothing else in the
graph has to be scale-equivariant; the outlier moves into the weights, which are quantized per output channel.
s_k = max|X_k|^alpha / max|W_k|^(1 - alpha), normalized to geometric mean 1, with max|X_k| over the calibration
data. It is tried as a candidate ("+smooth") for MatMul-dominated graphs and kept only where it measures better.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..onnxgraph.census import attr, consumers
from ..onnxgraph.extra_outputs import session_with_outputs
from .equalize import float_copy, write_back
from .smooth import SmoothResult, smoothing_scales

ALPHA = 0.8  # zoo MiniLM, dynamic per-channel int8, score sentences, embedding SQNR: 0.5 19.7 dB, 0.8 25.0,
# 0.9 24.7, 1.0 23.9 (none: 21.5)


@dataclass
class InputSmoothResult(SmoothResult):
    """`streams`: the smoothed input tensors; `layers`: the MatMul/Gemm layers reading them."""

    layers: int = 0


def _row_view(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray | None:
    """W as [K, N] (rows = the input channels that X's last axis feeds), or None when that is not its layout."""
    if w.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return w
    if attr(node, "transA", 0):
        return None
    return w.T if attr(node, "transB", 0) else w


def _readers(model: onnx.ModelProto, inits: dict[str, np.ndarray], result: InputSmoothResult):
    readers = consumers(model.graph)
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in inits \
                or n.input[0] in inits:
            continue
        if len(readers[n.input[1]]) != 1:
            result.skipped["weight shared"] = result.skipped.get("weight shared", 0) + 1
            continue
        if _row_view(n, inits[n.input[1]]) is None:
            result.skipped["weight layout"] = result.skipped.get("weight layout", 0) + 1
            continue
        out.setdefault(n.input[0], []).append(n)
    return out


def smooth_matmul_inputs(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]], *, alpha: float = ALPHA,
                         threads: int = 1) -> tuple[onnx.ModelProto, InputSmoothResult]:
    """A copy of `model` in which the inputs of constant-weight MatMul/Gemm layers are smoothed (module docstring)."""
    out, inits = float_copy(model)
    result = InputSmoothResult()
    groups = _readers(out, inits, result)
    if not groups:
        return out, result
    names = sorted(groups)
    sess = session_with_outputs(model, names, threads=threads, origin="model (MatMul input statistics)")
    amax: dict[str, np.ndarray] = {}
    for feed in feeds:
        for t, x in zip(names, sess.run(names, feed), strict=True):
            x = np.asarray(x, dtype=np.float32)
            if x.ndim == 0:
                continue
            m = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
            amax[t] = np.maximum(amax[t], m) if t in amax and amax[t].shape == m.shape else m
    touched: set[str] = set()
    added: list[tuple[str, onnx.NodeProto]] = []
    for t in names:
        layers = groups[t]
        views = [_row_view(n, inits[n.input[1]]) for n in layers]
        rows = [r for r in views if r is not None]
        if t not in amax or len(rows) != len(views) or any(r.shape[0] != amax[t].shape[0] for r in rows):
            result.skipped["input channels do not match the weight"] = \
                result.skipped.get("input channels do not match the weight", 0) + 1
            continue
        ax = amax[t]
        aw = np.max([np.abs(r).max(axis=1) for r in rows], axis=0)
        s, live = smoothing_scales(ax, aw, alpha)
        if not live:
            continue
        inv, smoothed = f"{t}_smooth_inv", f"{t}_smoothed"
        out.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
        added.append((t, helper.make_node("Mul", [t, inv], [smoothed], name=f"{t}_smooth")))
        for n in layers:
            w = inits[n.input[1]]
            if n.op_type == "Gemm" and attr(n, "transB", 0):
                inits[n.input[1]] = w * s[None, :]
            else:
                inits[n.input[1]] = w * s[:, None]
            touched.add(n.input[1])
            n.input[0] = smoothed
        result.streams += 1
        result.layers += len(layers)
    write_back(out, inits, touched)
    _insert_after_producers(out.graph, added)
    return out, result


def _insert_after_producers(graph: onnx.GraphProto, added: list[tuple[str, onnx.NodeProto]]) -> None:
    """Put each new node right after the node producing its input (graph inputs: first), keeping the order
    topological."""
    nodes = list(graph.node)
    where = {o: i for i, n in enumerate(nodes) for o in n.output}
    after: dict[int, list[onnx.NodeProto]] = {}
    for t, node in added:
        after.setdefault(where.get(t, -1), []).append(node)
    ordered = list(after.get(-1, []))
    for i, n in enumerate(nodes):
        ordered.append(n)
        ordered.extend(after.get(i, []))
    del graph.node[:]
    graph.node.extend(ordered)
