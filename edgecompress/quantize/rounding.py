"""Weight rounding and clipping that minimise each layer's output error (the AdaRound / AdaQuant / GPTQ family,
solved on second-order statistics).

For every Conv / Gemm / MatMul with a constant weight, the layer's input is read on the calibration samples as
the quantized model really sees it (`xq`, the output of the DequantizeLinear before it). Its patches (im2col
rows) give, per group, the moments n, E[xq], E[xq xq^T]. The expected squared error that quantizing a weight row
`w` to `v` adds to the layer's output on that input (with the bias re-centred: empirical bias correction on the
layer's real quantized input) is then a quadratic form

    L(v) = (w - v)^T C (w - v)          (C: covariance of the patches)

Each layer corrects only its own weights' error: fitting w.x on the fp32 input instead would also undo the
upstream error, which the upstream layers undo themselves (fitted all at once, it counts twice; measured on the
zoo MobileNetV2, top-1 agreement fell to 0).

so that, per output channel, the clipping scale is chosen from a grid by L (not by weight min-max) and the
integer values are then improved by exact coordinate descent on the integer grid (each step minimises L along
one weight; L never increases). The element that fixes the channel's scale stays at +-qmax.

The result is written back as an fp32 model whose weights lie exactly on the chosen grid (and whose biases
absorb the mean output shift): ONNX Runtime's own quantizer then reproduces these integers and scales in any
format (QDQ or QOperator), so the model stays ORT-runnable with no custom op. A layer keeps its new weights only
if they lower the error on the half of the calibration samples they were not fitted on, in both directions
(2-fold cross-validation); the final fit uses all samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..data import FeedData
from ..onnxgraph.census import attr, consumers
from ..onnxgraph.extra_outputs import session_with_outputs

CLIP_GRID = tuple(np.round(np.linspace(1.0, 0.7, 16), 4))  # per-channel scale = alpha * max|w| / qmax
SWEEPS = 4  # coordinate-descent sweeps over every weight of a row
SAMPLES = 64  # calibration samples whose layer inputs are measured
MAX_POSITIONS = 1024  # output positions sampled per sample and layer (patches are re-read, not all stored)
MAX_DIM = 4608  # patch length above which a layer is left as it is (its moments would not fit comfortably)
GAIN = 0.995  # a layer is rewritten only if held-out error falls below GAIN x the round-to-nearest error
DAMP = 0.01  # proximal weight: lambda |v - w|^2 with lambda = DAMP x mean input variance (GPTQ's 1 % damping);
# an input that barely varies on the calibration data (a dead or saturated channel) keeps its weight near fp32


@dataclass
class Layer:
    """One weighted node: how its weight maps to rows (output channels) x patch entries, and its moments."""

    node: str
    op: str
    xq: str  # the layer's input tensor in the quantized model (a DequantizeLinear output)
    weight: str
    bias: str | None
    shape: tuple[int, ...]  # the weight initializer's shape
    groups: int
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    transposed: bool = False  # MatMul / Gemm(transB=0): weight is (in, out)
    moments: list[dict[str, np.ndarray]] = field(default_factory=lambda: [{}, {}])  # fold 0 / fold 1


@dataclass
class RoundingReport:
    layers: int = 0
    improved: int = 0
    clipped_channels: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    error_db_before: float | None = None  # mean held-out output SQNR of round-to-nearest over the layers
    error_db_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "improved": self.improved, "clipped_channels": self.clipped_channels,
                "skipped": dict(list(self.skipped.items())[:20]), "skipped_count": len(self.skipped),
                "held_out_sqnr_db_before": self.error_db_before, "held_out_sqnr_db_after": self.error_db_after}


def find_layers(fp32: onnx.ModelProto, q: onnx.ModelProto, report: RoundingReport) -> list[Layer]:
    """The weighted nodes of `fp32` whose quantized twin in `q` reads a dequantized input and weight."""
    inits = {t.name: t for t in fp32.graph.initializer}
    q_by_out = {o: n for n in q.graph.node for o in n.output}
    q_nodes = {n.name: n for n in q.graph.node if n.name}
    readers = consumers(fp32.graph)
    layers = []
    for n in fp32.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        label = n.name or n.output[0]
        twin = q_nodes.get(n.name) if n.name else None
        if twin is None or twin.op_type != n.op_type:
            twin = q_by_out.get(n.output[0])
        if twin is None or twin.op_type != n.op_type:
            report.skipped[label] = "no quantized twin (kept in fp32 or fused)"
            continue
        dq_x, dq_w = q_by_out.get(twin.input[0]), q_by_out.get(twin.input[1])
        if dq_x is None or dq_x.op_type != "DequantizeLinear" or dq_w is None or dq_w.op_type != "DequantizeLinear":
            report.skipped[label] = "input or weight not dequantized in the quantized model"
            continue
        if len(readers.get(n.input[1], [])) > 1:
            report.skipped[label] = "weight shared with another node"
            continue
        w = inits[n.input[1]]
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if bias is not None and bias not in inits:
            report.skipped[label] = "bias is not a constant"
            continue
        shape = tuple(int(d) for d in w.dims)
        if n.op_type == "Conv":
            if attr(n, "auto_pad", b"NOTSET") not in (b"NOTSET", b""):
                report.skipped[label] = "auto_pad"
                continue
            k = tuple(shape[2:])
            nd = len(k)
            layer = Layer(label, "Conv", twin.input[0], n.input[1], bias, shape, int(attr(n, "group", 1)), k,
                          tuple(attr(n, "strides", (1,) * nd)), tuple(attr(n, "pads", (0,) * (2 * nd))),
                          tuple(attr(n, "dilations", (1,) * nd)))
            if nd not in (1, 2):
                report.skipped[label] = f"{nd}-D convolution"
                continue
        else:
            if len(shape) != 2:
                report.skipped[label] = "weight is not 2-D"
                continue
            transposed = n.op_type == "MatMul" or not attr(n, "transB", 0)
            if n.op_type == "Gemm" and attr(n, "transA", 0):
                report.skipped[label] = "Gemm transA"
                continue
            if n.op_type == "Gemm" and attr(n, "alpha", 1.0) != 1.0:
                report.skipped[label] = "Gemm alpha != 1"
                continue
            layer = Layer(label, n.op_type, twin.input[0], n.input[1],
                          bias if n.op_type == "Gemm" else None, shape, 1, transposed=transposed)
        if _patch_dim(layer) > MAX_DIM:
            report.skipped[label] = f"patch length {_patch_dim(layer)} > {MAX_DIM}"
            continue
        layers.append(layer)
    return layers


def _patch_dim(layer: Layer) -> int:
    if layer.op == "Conv":
        return int(layer.shape[1] * np.prod(layer.kernel))
    return layer.shape[0] if layer.transposed else layer.shape[1]


def _rows(layer: Layer, w: np.ndarray) -> np.ndarray:
    """Weight as (groups, rows per group, patch length)."""
    if layer.op == "Conv":
        return w.reshape(layer.groups, w.shape[0] // layer.groups, -1)
    return (w.T if layer.transposed else w)[None]


def _unrows(layer: Layer, r: np.ndarray) -> np.ndarray:
    if layer.op == "Conv":
        return r.reshape(layer.shape)
    return r[0].T if layer.transposed else r[0]


def patches(layer: Layer, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """(groups, positions, patch length) im2col rows of one input tensor (all samples of its batch); at most
    MAX_POSITIONS output positions per sample, sampled with `rng`."""
    if layer.op != "Conv":
        d = _patch_dim(layer)
        flat = np.asarray(x, np.float32).reshape(-1, d)
        if rng is not None and flat.shape[0] > MAX_POSITIONS * max(1, x.shape[0]):
            flat = flat[np.sort(rng.choice(flat.shape[0], MAX_POSITIONS * x.shape[0], replace=False))]
        return flat[None]
    x = np.asarray(x, np.float32)
    if x.ndim == 3:  # 1-D conv: a 2-D one of height 1
        x = x[:, :, None, :]
        k, s, dl = (1,) + layer.kernel, (1,) + layer.strides, (1,) + layer.dilations
        p: tuple[int, ...] = (0, layer.pads[0], 0, layer.pads[1])
    else:
        k, s, dl, p = layer.kernel, layer.strides, layer.dilations, layer.pads
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    oh = (xp.shape[2] - dl[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (xp.shape[3] - dl[1] * (k[1] - 1) - 1) // s[1] + 1
    pos = np.arange(oh * ow)
    if rng is not None and pos.size > MAX_POSITIONS:
        pos = np.sort(rng.choice(pos.size, MAX_POSITIONS, replace=False))
    oy, ox = (pos // ow) * s[0], (pos % ow) * s[1]
    iy = oy[:, None] + np.arange(k[0])[None] * dl[0]  # (P, kh)
    ix = ox[:, None] + np.arange(k[1])[None] * dl[1]  # (P, kw)
    pt = xp[:, :, iy[:, :, None], ix[:, None, :]]  # (N, C, P, kh, kw)
    n, c = pt.shape[:2]
    g = layer.groups
    pt = pt.reshape(n, g, c // g, len(pos), k[0] * k[1]).transpose(1, 0, 3, 2, 4)
    return pt.reshape(g, n * len(pos), (c // g) * k[0] * k[1])


def accumulate(layer: Layer, fold: int, pq: np.ndarray) -> None:
    m = layer.moments[fold]
    upd = {"n": np.array(pq.shape[1], np.float64), "sq": pq.astype(np.float64).sum(1),
           "qq": np.einsum("gpi,gpj->gij", pq, pq, optimize=True).astype(np.float64)}
    for k, v in upd.items():
        m[k] = m[k] + v if k in m else v


def collect(q: onnx.ModelProto, layers: list[Layer], data: FeedData, *, threads: int,
            tick: Callable[[int], None] | None = None) -> None:
    """Moments of every layer's input patches in the quantized model `q` on `data` (samples alternate between
    the two folds)."""
    xqs = list(dict.fromkeys(L.xq for L in layers))
    sess = session_with_outputs(q, xqs, threads=threads, graph_optimization="basic",
                                origin="int8 model with exposed layer inputs")
    rng = np.random.default_rng(0)
    for i, feed in enumerate(data):
        b = dict(zip(xqs, sess.run(xqs, feed), strict=True))
        for L in layers:
            accumulate(L, i % 2, patches(L, b[L.xq], np.random.default_rng(int(rng.integers(1 << 31)))))
        if tick:
            tick(1)


def _cov(m: dict[str, np.ndarray], centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """Second moment (or covariance) of the patches, and their mean."""
    mq = m["sq"] / m["n"]
    qq = m["qq"] / m["n"]
    if centred:
        qq = qq - mq[:, :, None] * mq[:, None, :]
    return qq, mq


def _merge(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: a[k] + b[k] for k in a}


def row_loss(m: dict[str, np.ndarray], w: np.ndarray, v: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """E[((w - v).xq - delta)^2] per row on moments `m` (uncentred): (g, r)."""
    qq, mq = _cov(m, centred=False)
    e = w - v
    return _quad(e, qq, e) - 2 * delta * np.einsum("gri,gi->gr", e, mq) + delta ** 2


def _energy(m: dict[str, np.ndarray], w: np.ndarray) -> np.ndarray:
    qq, _ = _cov(m, centred=False)
    return _quad(w, qq, w)


def _quad(v: np.ndarray, m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """v_r^T M u_r per group and row: (g, r, d) x (g, d, d) x (g, r, d) -> (g, r), through BLAS."""
    return (np.matmul(v, m) * u).sum(-1)


def fit(m: dict[str, np.ndarray], w: np.ndarray, qmax: int, per_channel: bool,
        shift: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Quantized rows (real values on the grid) and bias shifts minimising the output error (centred: with the
    bias shifted by the mean error, when `shift`)."""
    qq, mq = _cov(m, centred=shift)
    g, r, d = w.shape
    damp = DAMP * np.maximum(np.einsum("gii->g", qq) / d, 1e-12)
    qq = qq + damp[:, None, None] * np.eye(d)[None]
    b = np.matmul(w, qq)  # (C + lambda I) w: the linear term (C symmetric)
    amax = np.abs(w).max(axis=2) if per_channel else np.full((g, r), np.abs(w).max())
    amax = np.where(amax > 0, amax, 1.0)

    def loss(v: np.ndarray) -> np.ndarray:
        return _quad(v, qq, v) - 2 * (v * b).sum(-1)

    best_v: Any = None
    best_l: Any = None
    best_a = np.ones((g, r))
    for alpha in (CLIP_GRID if per_channel else (1.0,)):
        s = (alpha * amax / qmax)[:, :, None]
        v = np.clip(np.round(w / s), -qmax, qmax) * s
        lv = loss(v)
        if best_v is None:
            best_v, best_l = v, lv
            continue
        take = lv < best_l
        best_v = np.where(take[:, :, None], v, best_v)
        best_l = np.where(take, lv, best_l)
        best_a = np.where(take, alpha, best_a)
    scale: np.ndarray = np.asarray(best_a * amax / qmax)[:, :, None]
    qv: np.ndarray = np.round(best_v / scale)
    # the entry that fixes the scale (|q| = qmax) stays put: ORT recomputes the scale from max|w|
    if per_channel:
        frozen = np.abs(qv) >= qmax
        first = np.argmax(frozen, axis=2)
        keep = np.zeros_like(frozen)
        np.put_along_axis(keep, first[:, :, None], True, axis=2)
    else:
        keep = np.zeros(qv.shape, bool)
        keep.reshape(-1)[np.argmax(np.abs(w).reshape(-1))] = True
    grad = np.matmul(qv * scale, qq) - b  # dL/dv / 2
    diag = np.einsum("gii->gi", qq)  # (g, d)
    for _ in range(SWEEPS):
        moved = 0
        for i in range(d):
            cur = qv[:, :, i]
            target = cur - grad[:, :, i] / (diag[:, None, i] * scale[:, :, 0])
            new = np.clip(np.round(target), -qmax, qmax)
            new = np.where(keep[:, :, i], cur, new)
            step = (new - cur) * scale[:, :, 0]
            if not step.any():
                continue
            moved += int(np.count_nonzero(step))
            qv[:, :, i] = new
            grad += step[:, :, None] * qq[:, i, :][:, None, :]
        if not moved:
            break
    v = qv * scale
    delta = np.einsum("gri,gi->gr", w - v, mq) if shift else np.zeros((g, r))
    return v, delta, int(np.count_nonzero(best_a < 1.0))


def _rtn(w: np.ndarray, qmax: int, per_channel: bool) -> np.ndarray:
    amax = np.abs(w).max(axis=2, keepdims=True) if per_channel else np.abs(w).max()
    s = np.where(amax > 0, amax, 1.0) / qmax
    return np.clip(np.round(w / s), -qmax, qmax) * s


def _db(err: float, energy: float) -> float:
    return float(10 * np.log10(max(energy, 1e-30) / max(err, 1e-30)))


def optimize(fp32: onnx.ModelProto, layers: list[Layer], *, qmax: int, per_channel: bool,
             report: RoundingReport) -> onnx.ModelProto:
    """A copy of `fp32` with each layer's weight on its error-minimising grid (where held-out error falls)."""
    out = onnx.ModelProto()
    out.CopyFrom(fp32)
    inits = {t.name: t for t in out.graph.initializer}
    before, after = [], []
    for L in layers:
        report.layers += 1
        w0 = numpy_helper.to_array(inits[L.weight]).astype(np.float64)
        w = _rows(L, w0)
        (m0, m1), L.moments = L.moments, [{}, {}]  # the moments are released as each layer is done
        if not m0 or not m1:
            report.skipped[L.node] = "too few calibration samples for two folds"
            continue
        shift = L.op != "MatMul"  # MatMul has no bias to absorb the mean error (an Add would change the graph)
        rtn = _rtn(w, qmax, per_channel)
        zero = np.zeros(w.shape[:2])
        base = new = energy = 0.0
        for fit_m, check_m in ((m0, m1), (m1, m0)):
            v, delta, _ = fit(fit_m, w, qmax, per_channel, shift)
            base += float(row_loss(check_m, w, rtn, zero).sum())
            new += float(row_loss(check_m, w, v, delta).sum())
            energy += float(_energy(check_m, w).sum())
        before.append(_db(base, energy))
        if not new < GAIN * base:
            after.append(before[-1])
            continue
        v, delta, clipped = fit(_merge(m0, m1), w, qmax, per_channel, shift)
        after.append(_db(new, energy))
        report.improved += 1
        report.clipped_channels += clipped
        inits[L.weight].CopyFrom(numpy_helper.from_array(_unrows(L, v).astype(np.float32), L.weight))
        if not shift:
            continue
        add = delta.reshape(-1).astype(np.float32)
        if L.bias is not None:
            b = numpy_helper.to_array(inits[L.bias]).astype(np.float32)
            inits[L.bias].CopyFrom(numpy_helper.from_array((b + add).astype(np.float32), L.bias))
        else:  # Conv / Gemm without a bias: one is added (same op, optional input)
            name = f"{L.node}_bias_rounding"
            out.graph.initializer.append(numpy_helper.from_array(add, name))
            node = next(n for n in out.graph.node if (n.name or n.output[0]) == L.node)
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
    if before:
        report.error_db_before = round(float(np.mean(before)), 2)
        report.error_db_after = round(float(np.mean(after)), 2)
    return out
