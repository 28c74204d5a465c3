"""BatchNormMomentMatching: re-estimate BatchNorm statistics of the pruned model on calibration data.

For each BatchNormalization (in topological order) the running mean/var are re-estimated so that the normalized
input of the pruned model has the same per-channel mean and spread as the original model's on the same data:
with (mu_o, s_o) and (mu_p, s_p) the calibration statistics of the BN input in the original and pruned model,
    sqrt(var' + eps) = s_p / s_o * sqrt(var + eps),   mean' = mu_p - (mu_o - mean) * sqrt(var' + eps) / sqrt(var + eps).
This is the classic "re-estimate BN after pruning" step, written so an unchanged layer is left unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from .calib import CalibratedPass, collect
from .graphutil import attr, const_array, set_const
from .groups import Analysis
from .irchecks import const_input, input_value, node_name, value_name


def _moments(xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([np.moveaxis(np.asarray(a, dtype=np.float64), 1, 0).reshape(a.shape[1], -1) for a in xs], 1)
    return x.mean(1), x.std(1)


class BatchNormMomentMatching(CalibratedPass):
    def __init__(self, reference: onnx.ModelProto, analysis: Analysis, keep: Mapping[int, np.ndarray],
                 feeds: Sequence[dict]) -> None:
        super().__init__(reference, analysis, keep, feeds)
        self.updated: list[str] = []

    def _kept(self, node: str, n: int) -> np.ndarray:
        """The input channels of BN `node` (of `n` before pruning) that are kept: every pruned group with a
        bn_scale slice on the node removes its channels at that slice's offset (several groups after a Concat)."""
        removed = []
        for gid, kept in self.keep.items():
            lost = np.setdiff1d(np.arange(self.analysis.groups[gid].size), kept)
            removed += [sl.tensor_indices(lost) for sl in self.analysis.groups[gid].slices
                        if sl.node == node and sl.kind == "bn_scale"]
        return np.setdiff1d(np.arange(n), np.concatenate(removed)) if removed else np.arange(n)

    def __call__(self, model: ir.Model) -> bool:
        bns = [n for n in model.graph if n.op_type == "BatchNormalization"
               and all(const_array(v) is not None for v in n.inputs[1:5])]
        if not bns:
            return False
        ref = collect(self.reference, [value_name(n.inputs[0], f"input of {n.name}") for n in bns], self.feeds)
        for node in bns:
            name, x = node_name(node), value_name(node.inputs[0], f"input of {node.name}")
            mean_v, var_v = input_value(node, 3), input_value(node, 4)
            xs = collect(model, [x], self.feeds)[x]
            mean, var = const_input(node, 3).astype(np.float64), const_input(node, 4).astype(np.float64)
            eps = float(attr(node, "epsilon", 1e-5))
            mu_p, s_p = _moments(xs)
            mu_o, s_o = _moments(ref[x])
            kept = self._kept(name, len(mu_o))
            mu_o, s_o = mu_o[kept], s_o[kept]
            ok = (s_o > 1e-8) & (s_p > 1e-8)
            sd = np.sqrt(var + eps)
            sd_new = np.where(ok, s_p / np.where(ok, s_o, 1) * sd, sd)
            mean_new = np.where(ok, mu_p - (mu_o - mean) * sd_new / sd, mean + (mu_p - mu_o))
            var_new = np.maximum(sd_new ** 2 - eps, 0)
            if np.allclose(mean_new, mean, rtol=1e-6, atol=1e-7) and np.allclose(var_new, var, rtol=1e-6, atol=1e-7):
                continue
            dtype = const_input(node, 3).dtype
            set_const(mean_v, mean_new.astype(dtype))
            set_const(var_v, var_new.astype(dtype))
            self.updated.append(name)
        return bool(self.updated)
