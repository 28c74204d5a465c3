"""Activation smoothing of linear residual streams (SmoothQuant, Xiao et al. 2023, for convolutional streams).

In networks with linear bottlenecks (MobileNetV2 and its kin) the residual stream — the projection convs' outputs
and the Adds that sum them — carries no activation function, and a few of its channels are several times larger
than the rest: per-tensor int8 activations then spend their range on those channels (22 dB on the zoo
MobileNetV2's late stream, against 30 dB elsewhere). Channel c of such a stream can be divided by s_c in every
producer (rows of the producing convs' weights and biases) and multiplied back in every consumer (input channels
of the reading convs): the function is unchanged, the per-tensor range shrinks, and the outlier moves into the
consumers' weights, which are quantized per output channel. s_c = max|x_c|^alpha / max|w_c|^(1 - alpha)
(normalized to geometric mean 1), with max|x_c| over every tensor of the stream on the calibration data. It runs
with cross-layer equalization (equalize.py) as the "+CLE" candidate, which is kept only where it measures better.

A stream is kept only when every tensor of it is produced by a Conv with constant weights or an Add inside it, and
read only by Convs with constant weights or Adds inside it (anything else, or a graph output, and it is left
alone, with the reason counted).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..onnxgraph.census import attr, consumers
from ..onnxgraph.extra_outputs import session_with_outputs
from .equalize import float_copy, write_back

MAX_SCALE = 1e2  # bound on a channel's smoothing factor (either way)
ALPHA = 1.0  # measured on the zoo MobileNetV2 (score split, int8 logits SQNR): 0.5 13.6 dB, 0.75 13.5, 1.0 13.9


@dataclass
class SmoothResult:
    streams: int = 0
    channels: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.streams > 0


def _streams(model: onnx.ModelProto, inits: dict[str, np.ndarray], result: SmoothResult):
    g = model.graph
    readers = consumers(g)
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    adds = [n for n in g.node if n.op_type == "Add" and len(n.input) == 2 and not any(i in inits for i in n.input)]
    for n in adds:
        for t in (n.input[0], n.input[1]):
            parent[find(t)] = find(n.output[0])
    groups: dict[str, set[str]] = {}
    for n in adds:
        for t in (*n.input, n.output[0]):
            groups.setdefault(find(t), set()).add(t)

    def skip(reason: str) -> None:
        result.skipped[reason] = result.skipped.get(reason, 0) + 1

    for tensors in groups.values():
        prods, cons, ok = [], [], True
        for t in tensors:
            p = producer.get(t)
            if t in outputs:
                skip("stream reaches a graph output")
                ok = False
                break
            if p is None or not (p.op_type == "Add" and p in adds or _const_conv(p, inits)):
                skip(f"stream tensor produced by {p.op_type if p is not None else 'a graph input'}")
                ok = False
                break
            if p.op_type == "Conv":
                prods.append(p)
            for r in readers.get(t, []):
                if r.op_type == "Add" and r.output[0] in tensors:
                    continue
                if not _const_conv(r, inits) or r.input[0] != t or \
                        (attr(r, "group", 1) != 1 and inits[r.input[1]].shape[1] != 1):
                    skip(f"stream read by {r.op_type}")
                    ok = False
                    break
                cons.append(r)
            if not ok:
                break
        if ok and prods and cons:
            yield sorted(tensors), prods, cons


def _const_conv(n: onnx.NodeProto | None, inits: dict[str, np.ndarray]) -> bool:
    return n is not None and n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits


def smooth_streams(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]], *, alpha: float = ALPHA,
                   threads: int = 1) -> tuple[onnx.ModelProto, SmoothResult]:
    """A copy of `model` with every eligible linear stream smoothed (see the module docstring)."""
    out, inits = float_copy(model)
    g = out.graph
    result = SmoothResult()
    streams = list(_streams(out, inits, result))
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    streams = [s for s in streams if all(uses[n.input[1]] == 1 and (len(n.input) < 3 or not n.input[2]
                                                                    or uses[n.input[2]] == 1)
                                         for n in (*s[1], *s[2]))]
    if not streams:
        return out, result
    names = sorted({t for s in streams for t in s[0]})
    sess = session_with_outputs(model, names, threads=threads, origin="model (stream statistics)")
    amax: dict[str, np.ndarray] = {}
    for feed in feeds:
        for t, x in zip(names, sess.run(names, feed), strict=True):
            m = np.abs(np.asarray(x, dtype=np.float32)).max(axis=tuple(i for i in range(x.ndim) if i != 1))
            amax[t] = np.maximum(amax.get(t, 0), m)
    touched: set[str] = set()
    for tensors, prods, cons in streams:
        if len({amax[t].shape for t in tensors}) != 1:
            result.skipped["stream tensors of different channel counts"] = \
                result.skipped.get("stream tensors of different channel counts", 0) + 1
            continue
        ax = np.max([amax[t] for t in tensors], axis=0)
        aw = np.zeros_like(ax)
        for c in cons:
            w = inits[c.input[1]]
            aw = np.maximum(aw, np.abs(_in_channels(c, w)).max(1))
        s, live = smoothing_scales(ax, aw, alpha)
        if not live:
            continue
        for p in prods:
            w = inits[p.input[1]]
            inits[p.input[1]] = w / s.reshape((-1,) + (1,) * (w.ndim - 1))
            touched.add(p.input[1])
            if len(p.input) > 2 and p.input[2]:
                inits[p.input[2]] = inits[p.input[2]] / s
                touched.add(p.input[2])
        for c in cons:
            w = inits[c.input[1]]
            if attr(c, "group", 1) == 1:
                inits[c.input[1]] = w * s.reshape((1, -1) + (1,) * (w.ndim - 2))
            else:  # depthwise reader: its channel c reads stream channel c
                inits[c.input[1]] = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
            touched.add(c.input[1])
        result.streams += 1
        result.channels += live
    write_back(out, inits, touched)
    return out, result


def smoothing_scales(ax: np.ndarray, aw: np.ndarray, alpha: float) -> tuple[np.ndarray, int]:
    """SmoothQuant's per-channel s = ax^alpha / aw^(1 - alpha) from activation and weight ranges, normalized to
    geometric mean 1 and clipped to [1/MAX_SCALE, MAX_SCALE]; channels lacking either range keep 1. Also the
    number of channels that have both (0: nothing to smooth)."""
    ok = (ax > 1e-12) & (aw > 1e-12)
    if not ok.any():
        return np.ones_like(ax, dtype=np.float32), 0
    s = np.where(ok, np.where(ok, ax, 1.0) ** alpha / np.where(ok, aw, 1.0) ** (1 - alpha), 1.0)
    s = np.clip(s / np.exp(np.log(s[ok]).mean()), 1 / MAX_SCALE, MAX_SCALE).astype(np.float32)
    return s, int(ok.sum())


def _in_channels(conv: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """(input channels, rest) view of a conv's weights: dense [O, C, k..] by C, depthwise [C, 1, k..] by C."""
    if attr(conv, "group", 1) == 1:
        return np.moveaxis(w, 1, 0).reshape(w.shape[1], -1)
    return w.reshape(w.shape[0], -1)
