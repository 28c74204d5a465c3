"""Channel importance per group: l1, l2, magnitude (= l2, thresholded by alpha in selection), bn, activation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from .graphutil import attr
from .groups import Analysis, Group, Slice
from .irchecks import node_name, value_name


def _values(model: ir.Model) -> dict[str, np.ndarray]:
    out = {name: np.asarray(v.const_value.numpy()) for name, v in model.graph.initializers.items()
           if v.const_value is not None}
    for node in model.graph:
        if node.op_type == "Constant" and "value" in node.attributes:
            name = value_name(node.outputs[0], f"output of Constant {node.name}")
            out.setdefault(name, np.asarray(node.attributes["value"].value.numpy()))
    return out


def slice_channels(arr: np.ndarray, sl: Slice, size: int) -> np.ndarray:
    """(size, expand * rest) view of the slice: one row per group channel."""
    a = np.moveaxis(np.asarray(arr, dtype=np.float64), sl.axis, 0)[sl.offset: sl.offset + size * sl.expand]
    return a.reshape(size, -1)


def _norm(rows: np.ndarray, p: int) -> np.ndarray:
    return np.abs(rows).sum(1) if p == 1 else np.sqrt((rows ** 2).sum(1))


def _normalized(x: np.ndarray) -> np.ndarray:
    m = float(np.mean(x))
    return x / m if m > 0 else x


def _bn_factor(g: Group, vals: Mapping[str, np.ndarray], nodes: Mapping[str, ir.Node]) -> np.ndarray | None:
    """Per channel mean over the group's BatchNorms of |gamma| / sqrt(var + eps) (the channel's output scale)."""
    by_node: dict[str, dict[str, Slice]] = {}
    for sl in g.slices:
        if sl.kind in ("bn_scale", "bn_var"):
            by_node.setdefault(sl.node, {})[sl.kind] = sl
    facs = []
    for name, d in by_node.items():
        if len(d) != 2:
            continue
        eps = float(attr(nodes[name], "epsilon", 1e-5))
        gamma = slice_channels(vals[d["bn_scale"].value], d["bn_scale"], g.size)[:, 0]
        var = slice_channels(vals[d["bn_var"].value], d["bn_var"], g.size)[:, 0]
        facs.append(np.abs(gamma) / np.sqrt(np.maximum(var, 0) + eps))
    return np.mean(facs, axis=0) if facs else None


def weight_scores(g: Group, vals: Mapping[str, np.ndarray], nodes: Mapping[str, ir.Node], p: int) -> np.ndarray:
    """Norm of each channel's producer weights (each producer normalized by its mean), scaled by BatchNorm."""
    parts = [_normalized(_norm(slice_channels(vals[sl.value], sl, g.size), p)) for sl in g.slices
             if sl.kind in ("weight_out", "dw_weight")]
    score = np.mean(parts, axis=0) if parts else np.ones(g.size)
    fac = _bn_factor(g, vals, nodes)
    if fac is not None:
        score = score * _normalized(fac)
    return score


def bn_scores(g: Group, vals: Mapping[str, np.ndarray]) -> np.ndarray | None:
    parts = [np.abs(slice_channels(vals[sl.value], sl, g.size)[:, 0]) for sl in g.slices if sl.kind == "bn_scale"]
    return np.mean(parts, axis=0) if parts else None


def activation_scores(g: Group, vals: Mapping[str, np.ndarray], act_means: Mapping[tuple[str, int, int, int], np.ndarray]
                      ) -> np.ndarray | None:
    """Sum over consumers of mean |activation| x norm of the consumer's input weights for the channel."""
    total = np.zeros(g.size)
    found = False
    w_in = {(sl.node, sl.offset): sl for sl in g.slices if sl.kind == "weight_in"}
    for u in g.uses:
        key = (u.tensor, u.axis, u.offset, u.expand)
        if key not in act_means:
            continue
        act = act_means[key]
        sl = w_in.get((u.node, u.offset))
        wn = _norm(slice_channels(vals[sl.value], sl, g.size), 2) if sl is not None else np.ones(g.size)
        total += act * wn
        found = True
    return total if found else None


def activation_means(model: Any, analysis: Analysis, groups: list[int], feeds) -> dict:
    """Mean |x| per channel of every tensor that carries a prunable group's channels into a consumer."""
    import onnx

    from ..onnxgraph.extra_outputs import session_with_outputs

    uses = {}
    for gid in groups:
        g = analysis.groups[gid]
        for u in g.uses:
            uses[(u.tensor, u.axis, u.offset, u.expand)] = g.size
    if not uses:
        return {}
    names = sorted({k[0] for k in uses})
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else model  # bytes or a ModelProto (any size)
    sess = session_with_outputs(proto, names, origin="model (activation statistics)")
    sums: dict = {k: np.zeros(n) for k, n in uses.items()}
    count = 0
    for feed in feeds:
        res = dict(zip(names, sess.run(names, feed), strict=False))
        for (t, axis, off, exp), n in uses.items():
            x = np.moveaxis(np.abs(np.asarray(res[t], dtype=np.float64)), axis, 0)[off: off + n * exp]
            sums[(t, axis, off, exp)] += x.reshape(n, -1).mean(1)
        count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


def compute_scores(model: ir.Model, analysis: Analysis, gids: list[int], criterion: str,
                   act_means: Mapping | None = None, taylor: Mapping[int, np.ndarray] | None = None,
                   ) -> tuple[dict[int, np.ndarray], list[str]]:
    vals = _values(model)
    nodes = {node_name(n): n for n in model.graph}
    notes: list[str] = []
    out: dict[int, np.ndarray] = {}
    for gid in gids:
        g = analysis.groups[gid]
        s = None
        if criterion == "bn":
            s = bn_scores(g, vals)
            if s is None:
                notes.append(f"group {g.name}: no BatchNormalization, ranked by l2 instead of bn")
        elif criterion == "taylor":
            s = (taylor or {}).get(gid)
            if s is None or not np.any(s > 0):
                s = None
                notes.append(f"group {g.name}: no Taylor importance (no trainable parameters found), ranked by l2")
        elif criterion == "activation":
            s = activation_scores(g, vals, act_means or {})
            if s is None:
                notes.append(f"group {g.name}: no activation statistics, ranked by l2 instead")
        if s is None:
            s = weight_scores(g, vals, nodes, 1 if criterion == "l1" else 2)
        out[gid] = np.asarray(s, dtype=np.float64)
    return out, notes
