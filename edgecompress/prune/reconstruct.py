"""LeastSquaresReconstruction: re-fit each consumer of pruned channels so its output matches the unpruned model.

ThiNet / He et al. 2017 ("Channel pruning for accelerating very deep neural networks"): for every Conv/Gemm/
MatMul whose input lost channels, in topological order, take its input in the pruned model (which already
carries the previous layers' corrections) and its output in the original model on calibration data, and solve
the ridge-regularized least squares problem for the kept weights (and bias where the op has one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from .calib import CalibratedPass, collect
from .graphutil import attr, const_array, new_initializer, set_const
from .groups import Analysis
from .irchecks import const_input, input_value, node_name, value_name


def _conv_rows(x: np.ndarray, node: ir.Node, kshape: tuple[int, ...], rows: np.ndarray | None,
               out_hw: tuple[int, int]) -> np.ndarray:
    kh, kw = kshape
    pads = list(attr(node, "pads", [0, 0, 0, 0]))
    sh, sw = list(attr(node, "strides", [1, 1]))
    dh, dw = list(attr(node, "dilations", [1, 1]))
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    win = np.lib.stride_tricks.sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, : out_hw[0], : out_hw[1]]
    n, c, ho, wo = win.shape[:4]
    if rows is None:
        return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    i_n, rem = np.divmod(rows, ho * wo)
    i_h, i_w = np.divmod(rem, wo)
    return win[i_n, :, i_h, i_w].reshape(len(rows), c * kh * kw)


class LeastSquaresReconstruction(CalibratedPass):
    def __init__(self, reference: onnx.ModelProto, analysis: Analysis, keep: Mapping[int, np.ndarray],
                 feeds: Sequence[dict], *, max_rows: int = 40000, ridge: float = 1e-4, seed: int = 0) -> None:
        super().__init__(reference, analysis, keep, feeds)
        self.max_rows = max_rows
        self.ridge = ridge
        self.rng = np.random.default_rng(seed)
        self.refitted: list[str] = []

    def _consumers(self) -> set[str]:
        out = set()
        for gid in self.keep:
            for sl in self.analysis.groups[gid].slices:
                if sl.kind == "weight_in":
                    out.add(sl.node)
        return out

    def __call__(self, model: ir.Model) -> bool:
        consumers = self._consumers()
        targets = [n for n in model.graph if n.name in consumers
                   and n.op_type in ("Conv", "Gemm", "MatMul") and int(attr(n, "group", 1)) == 1]
        if not targets:
            return False
        outs = [value_name(n.outputs[0], f"output of {n.name}") for n in targets]
        ref = collect(self.reference, outs, self.feeds)
        for node, out in zip(targets, outs, strict=True):
            try:
                done = self._refit(model, node, ref[out])
            except np.linalg.LinAlgError as exc:
                self.notes.append(f"{node.name}: least squares failed ({exc}); weights left as pruned")
                continue
            if done:
                self.refitted.append(node_name(node))
        return bool(self.refitted)

    def _refit(self, model: ir.Model, node: ir.Node, ys: list[np.ndarray]) -> bool:
        name, weight, w0 = node_name(node), input_value(node, 1), const_input(node, 1)
        w = w0.astype(np.float64)
        bias_v = node.inputs[2] if len(node.inputs) > 2 else None
        if node.op_type == "Gemm" and bias_v is not None and const_array(bias_v) is None:
            self.notes.append(f"{name}: bias is not a constant; not re-fitted")
            return False
        x_name = value_name(node.inputs[0], f"input of {name}")
        xs = collect(model, [x_name], self.feeds)[x_name]
        if node.op_type == "Conv":
            if attr(node, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET") or w.ndim != 4:
                self.notes.append(f"{node.name}: only 2-D Conv with explicit pads is re-fitted")
                return False
            cout_all = ys[0].shape[1]
            kept = self._kept_out(name, cout_all)
            d = w.shape[1] * w.shape[2] * w.shape[3]
            has_bias = True
        else:
            tb = node.op_type == "Gemm" and int(attr(node, "transB", 0))
            kept = self._kept_out(name, ys[0].shape[-1])
            d = w.shape[1] if tb else w.shape[0]
            has_bias = node.op_type == "Gemm"
        dim = d + (1 if has_bias else 0)
        total_rows = sum(int(np.prod(y.shape)) // y.shape[1 if node.op_type == "Conv" else -1] for y in ys)
        if total_rows < 2 * dim:
            self.notes.append(f"{node.name}: {total_rows} calibration rows for {dim} unknowns; not re-fitted")
            return False
        budget = int(min(self.max_rows, max(16 * dim, 4096)))
        per = max(1, budget // len(ys))
        xtx = np.zeros((dim, dim))
        xty = np.zeros((dim, len(kept)))
        buf_a: list[np.ndarray] = []
        buf_y: list[np.ndarray] = []

        def flush() -> None:
            if buf_a:
                a = np.concatenate(buf_a).astype(np.float32)
                yt = np.concatenate(buf_y).astype(np.float32)
                xtx[...] += (a.T @ a).astype(np.float64)
                xty[...] += (a.T @ yt).astype(np.float64)
                buf_a.clear()
                buf_y.clear()

        pending = 0
        for x, y in zip(xs, ys, strict=True):
            if node.op_type == "Conv":
                ho, wo = y.shape[2], y.shape[3]
                nrows = y.shape[0] * ho * wo
                rows = np.sort(self.rng.choice(nrows, per, replace=False)) if nrows > per else None
                a = _conv_rows(x, node, w.shape[2:], rows, (ho, wo))
                yt = y[:, kept].transpose(0, 2, 3, 1).reshape(-1, len(kept))
                if rows is not None:
                    yt = yt[rows]
            else:
                a = x.reshape(-1, x.shape[-1])
                yt = y.reshape(-1, y.shape[-1])[:, kept]
            if has_bias:
                a = np.concatenate([a, np.ones((a.shape[0], 1), a.dtype)], axis=1)
            buf_a.append(a)
            buf_y.append(yt)
            pending += a.shape[0]
            if pending >= 8192:
                flush()
                pending = 0
        flush()
        lam = self.ridge * float(np.mean(np.diag(xtx))) + 1e-12
        sol = np.linalg.solve(xtx + lam * np.eye(dim), xty)  # (dim, kept)
        wt, bias = (sol[:d], sol[d]) if has_bias else (sol, None)
        if node.op_type == "Gemm":  # y = alpha A B + beta C: the solve fitted alpha B and beta C
            alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
            if alpha == 0 or beta == 0:
                self.notes.append(f"{name}: Gemm with alpha {alpha} / beta {beta}; not re-fitted")
                return False
            wt = wt / alpha
            bias = bias / beta if bias is not None else None
        dtype = w0.dtype
        if node.op_type == "Conv":
            set_const(weight, wt.T.reshape(len(kept), *w.shape[1:]).astype(dtype))
        elif node.op_type == "Gemm" and int(attr(node, "transB", 0)):
            set_const(weight, wt.T.astype(dtype))
        else:
            set_const(weight, wt.astype(dtype))
        if bias is not None:
            b = bias.astype(dtype)
            if bias_v is not None:
                old = const_input(node, 2)
                set_const(bias_v, b.reshape(old.shape) if old.size == b.size else b)
            else:
                node.resize_inputs(3)
                node.replace_input_with(2, new_initializer(model.graph, f"{name}_bias", b))
        return True
