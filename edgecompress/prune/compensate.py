"""MeanCompensation: a removed channel's average contribution moves into its consumers' biases.

A channel whose weights are ~0 still sends a constant (act(bias), common after BatchNorm folding) into every
consumer; any removed channel sends its mean plus a varying part. Dropping the channel drops both. Keeping the
mean costs nothing at run time: for every consumer weight W that lost input channels R, with m the mean of the
consumer's input on the calibration data in the original model,

    Conv:        b[o] += sum_{c in R} sum_{kh,kw} W[o, c, kh, kw] * m[c]   (border windows see padding: small error)
    Gemm/MatMul: b    += m[R] @ W[R, :]                                  (MatMul: into the Add that follows it)

Through depthwise convs, pools and residual adds the means are those of the tensor each consumer reads, so the
compensation is exact in expectation wherever the removed channels reach a linear consumer. Applied before least
squares reconstruction (which re-fits Conv/Gemm biases again) so that consumers it cannot re-fit (MatMul with a
separate bias, too few calibration rows, depthwise consumers, --no-reconstruct) keep the mean too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from ..onnxgraph.extra_outputs import session_with_outputs
from .calib import CalibratedPass
from .graphutil import attr, const_array, new_initializer, set_const
from .groups import Analysis, Slice, Use
from .irchecks import const_input


class MeanCompensation(CalibratedPass):
    def __init__(self, reference: onnx.ModelProto, analysis: Analysis, keep: Mapping[int, np.ndarray],
                 feeds: Sequence[dict]) -> None:
        super().__init__(reference, analysis, keep, feeds)
        self.compensated: list[str] = []

    def _pairs(self) -> list[tuple[Slice, Use, np.ndarray]]:
        """(weight_in slice, the use feeding that node, removed group channels) for every pruned group."""
        out = []
        for gid, kept in self.keep.items():
            g = self.analysis.groups[gid]
            removed = np.setdiff1d(np.arange(g.size), np.asarray(kept, dtype=np.int64))
            if not len(removed):
                continue
            uses = {u.node: u for u in g.uses}
            for sl in g.slices:
                if sl.kind == "weight_in" and sl.node in uses:
                    out.append((sl, uses[sl.node], removed))
        return out

    def _means(self, uses: Sequence[Use]) -> dict[str, np.ndarray]:
        """Per-channel means (along each use's axis) of the original model's tensors, streamed over the feeds."""
        axes = {u.tensor: u.axis for u in uses}
        names = list(axes)
        sess = session_with_outputs(self.reference, names, origin="original model (compensation pass)")
        sums: dict[str, np.ndarray] = {}
        counts = dict.fromkeys(names, 0)
        for k, feed in enumerate(self.feeds):
            try:
                res = sess.run(names, feed)
            except Exception as exc:  # noqa: BLE001 - ORT's own types; the fidelity check reports the run failure
                self.notes.append(f"compensation skipped: the original model does not run on calibration sample "
                                  f"{k}: {' '.join(str(exc).split())[:200]}")
                return {}
            for n, r in zip(names, res, strict=True):
                x = np.moveaxis(np.asarray(r, dtype=np.float64), axes[n], -1)
                flat = x.reshape(-1, x.shape[-1])
                sums[n] = sums.get(n, 0) + flat.sum(0)
                counts[n] += flat.shape[0]
        return {n: sums[n] / max(counts[n], 1) for n in sums}

    def __call__(self, model: ir.Model) -> list[str]:
        pairs = self._pairs()
        if not pairs or not self.feeds:
            return []
        means = self._means([u for _, u, _ in pairs])
        weights = {i.name: onnx.numpy_helper.to_array(i) for i in self.reference.graph.initializer}
        nodes = {n.name: n for n in model.graph}
        delta: dict[str, np.ndarray] = {}
        for sl, use, removed in pairs:
            w = weights.get(sl.value)
            node = nodes.get(sl.node)
            if w is None or node is None or use.tensor not in means:
                continue
            m = means[use.tensor][use.tensor_indices(removed)]
            wr = np.take(w.astype(np.float64), sl.tensor_indices(removed), axis=sl.axis)
            if node.op_type == "Conv":
                d = np.tensordot(wr, m, axes=([1], [0])).reshape(wr.shape[0], -1).sum(1)
            else:
                d = np.tensordot(m, wr, axes=([0], [sl.axis]))
            d = d.reshape(-1)
            delta[sl.node] = delta.get(sl.node, 0) + d
        for name, d in delta.items():
            if not np.any(d):
                continue
            node = nodes[name]
            d = d[self._kept_out(name, d.size)]
            if self._apply(model, node, d):
                self.compensated.append(name)
        return self.compensated

    def _apply(self, model: ir.Model, node: ir.Node, d: np.ndarray) -> bool:
        if node.op_type in ("Conv", "Gemm"):
            scale = float(attr(node, "beta", 1.0)) if node.op_type == "Gemm" else 1.0
            b = node.inputs[2] if len(node.inputs) > 2 else None
            if b is None:
                node.resize_inputs(3)
                dtype = const_input(node, 1).dtype
                node.replace_input_with(2, new_initializer(model.graph, f"{node.name}_bias", (d / scale).astype(dtype)))
                return True
            old = const_array(b)
            if old is None or old.size not in (1, d.size) or len(list(b.uses())) != 1:
                self.notes.append(f"{node.name}: bias is not a constant of its own; removed channels' mean not kept")
                return False
            new = (np.broadcast_to(old.reshape(-1), d.shape) + d / scale).astype(old.dtype)
            set_const(b, new.reshape(old.shape) if old.size == d.size else new)
            return True
        # MatMul: the Add right after it holds the bias
        out = node.outputs[0]
        adds = [u.node for u in out.uses() if u.node.op_type == "Add"]
        if len(list(out.uses())) == 1 and adds:
            add = adds[0]
            other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            c = const_array(other)
            if other is not None and c is not None and c.shape and c.shape[-1] == d.size and c.size == d.size \
                    and len(list(other.uses())) == 1:
                set_const(other, (c + d.reshape(c.shape)).astype(c.dtype))
                return True
        self.notes.append(f"{node.name}: no constant bias Add after it; removed channels' mean not kept")
        return False
