"""fp16 weights and compute for ARM targets with fp16 arithmetic (`isa = [..., "fp16"]` in targets/*.toml).

    model16, result = convert_fp16(onnx.load("model.onnx"), feeds)

Nodes stay in fp32 for three reasons, recorded per node: "rule" (op types in KEEP_FP32_OPS: reductions,
normalizations, exp/log/pow, index ops), "range" (a tensor the node reads or writes, measured on the feeds in
the fp32 model, is outside what fp16 holds) and "error" (parity of the fp16 model against fp32 was over the
threshold, so the nodes that added the most error, measured with extra outputs, go back to fp32 a few at a
time). The cast insertion is onnxruntime.transformers.float16's (keep_io_types=True: inputs and outputs stay
float32).

Where parity is measured: ONNX Runtime's x86 CPU EP loads fp16 graphs but has hardly any fp16 kernels (of the
common ops, LayerNormalization); it runs the rest in fp32 between Casts it inserts, and drops the fp32->fp16->fp32
Cast pairs that result, so a "host" run shows the fp16 weights' rounding and little else (no overflow, no fp16
math). The aarch64 CPU EP has real fp16 kernels (MatMul, Gemm, Conv, Add, Mul, Relu, Erf, pooling), so when the
arm64 emulation root exists (edgecompress.bench.emulation) the threshold is judged on that run.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import ConfigError, DataError, UnsupportedError, ValidationError
from ..onnxgraph.extra_outputs import serialized_with_outputs, session_with_outputs
from ..onnxgraph.runtime import make_session

RANGE_LIMIT = 0.5 * 65504.0  # a tensor with max |x| above this is kept in fp32 (headroom for the next op)
AMPLIFY = 10.0  # a node whose output error is > AMPLIFY x its inputs' error needs fp32 inputs, not just fp32 math
UNDERFLOW = 2.0 ** -20  # median nonzero |x| below this: fp16 subnormals keep < 4 significant bits
HOST, EMULATION = "host", "arm64 emulation"

# onnxruntime.transformers.float16.DEFAULT_OP_BLOCK_LIST (passing op_block_list replaces it, so it is repeated
# here whole): ai.onnx.ml ops, random ops and index/box ops without fp16 kernels, plus Min/Max/Upsample.
_ORT_DEFAULT_BLOCK = (
    "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer", "FeatureVectorizer",
    "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor", "Normalizer", "OneHotEncoder",
    "RandomUniformLike", "SVMClassifier", "SVMRegressor", "Scaler", "TreeEnsembleClassifier",
    "TreeEnsembleRegressor", "TreeEnsemble", "ZipMap", "NonMaxSuppression", "TopK", "RoiAlign", "Range", "CumSum",
    "Min", "Max", "Upsample")
# Ours: ops that sum or exponentiate (error and overflow grow with the reduced size or the exponent), and
# coordinate ops. Erf is not here: its output is in [-1, 1] and the aarch64 EP has an fp16 kernel for it.
_RULE = (
    "Softmax", "LogSoftmax", "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
    "ReduceSum", "ReduceSumSquare", "Resize", "Pow", "Sqrt", "Reciprocal", "Exp", "Log")
KEEP_FP32_OPS: tuple[str, ...] = tuple(dict.fromkeys(_RULE + _ORT_DEFAULT_BLOCK))
_CONTROL_FLOW = {"If", "Loop", "Scan", "SequenceMap"}


@dataclass(frozen=True)
class OutputParity:
    output: str
    where: str
    max_abs: float
    max_rel: float  # max_abs / max |fp32 output|
    cosine: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Fp16Result:
    kept_nodes: dict[str, str]  # node name -> "rule" | "range" | "error: <detail>" ("range: <detail>")
    kept_ops: dict[str, dict[str, int]]  # reason -> op type -> count
    converted_nodes: int
    parity: tuple[OutputParity, ...]
    judged_on: str  # where the threshold was checked
    threshold: float
    size_before: int
    size_after: int
    rounds: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def worst_rel(self) -> float:
        return max((p.max_rel for p in self.parity if p.where == self.judged_on), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"kept_nodes": dict(self.kept_nodes), "kept_ops": {k: dict(v) for k, v in self.kept_ops.items()},
                "converted_nodes": self.converted_nodes, "parity": [p.to_dict() for p in self.parity],
                "judged_on": self.judged_on, "threshold": self.threshold, "worst_rel": self.worst_rel,
                "size_before": self.size_before, "size_after": self.size_after, "rounds": self.rounds,
                "notes": list(self.notes)}


def convert_fp16(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], *, threshold: float = 1e-2,
                 emulate: bool | None = None, emulated_samples: int = 8,
                 step: int = 3) -> tuple[onnx.ModelProto, Fp16Result]:
    """`model` (fp32, left unchanged) with weights and compute in fp16 where the feeds show it is safe.

    threshold: the largest max_rel (max abs error over max |fp32|) allowed on any output. emulate: None = judge
    parity under arm64 emulation when its root is prepared, else on the host; True = require emulation; False =
    host only. emulated_samples: how many feeds (the first) run under emulation (qemu needs ~5-10 s per sample
    of a small transformer); the host runs them all. step: nodes sent back to fp32 in the first error round
    (doubling each round). Raises UnsupportedError (fp16 or float-free model), DataError (no feeds),
    ValidationError (parity holds only with every float node in fp32).
    """
    if not (isinstance(threshold, int | float) and threshold >= 0):
        raise ConfigError(f"convert_fp16: threshold must be a max relative error >= 0, got {threshold!r}")
    if emulated_samples < 1 or step < 1:
        raise ConfigError(f"convert_fp16: emulated_samples and step must be >= 1, got {emulated_samples}, {step}")
    feed_list: list[dict] = [{k: np.asarray(v) for k, v in f.items()} for f in feeds]
    feeds = feed_list
    if not feeds:
        raise DataError("convert_fp16: no feeds (give at least one sample to measure ranges and parity on)")
    src = _prepared(model)
    out_names = [o.name for o in src.graph.output]
    values, ref = _fp32_values(src, feeds, out_names)
    floats = set(values)
    compute = [n for n in src.graph.node if any(o in floats for o in n.output)]
    if not compute:
        raise UnsupportedError("convert_fp16: the model has no float32 compute: nothing to convert to fp16")
    where = _where(emulate)
    kept: dict[str, str] = {n.name: "rule" for n in compute if n.op_type in KEEP_FP32_OPS}
    for n in compute:
        if n.name not in kept and (why := _range_reason(n, values)):
            kept[n.name] = f"range: {why}"
    if all(n.name in kept for n in compute):
        raise UnsupportedError("convert_fp16: every float node stays fp32 (by rule or measured range): fp16 would "
                               "change nothing")
    rounds, k_step = 0, step
    while True:
        rounds += 1
        if all(n.name in kept for n in compute):
            raise ValidationError(f"convert_fp16: fp16 parity stays over max_rel {threshold:g} until every float "
                                  f"node is fp32 ({len(compute)} nodes): this model is not fp16-safe on these feeds")
        m16 = _convert(src, kept)
        parity = _parity(m16, feeds, ref, out_names, where, emulated_samples)
        worst = max((p.max_rel for p in parity if p.where == where), default=0.0)
        if worst <= threshold:
            break
        n_err = emulated_samples if where == EMULATION else len(feeds)
        kept.update(_worst_nodes(src, m16, feeds[:n_err], values, floats, compute, kept, where, k_step))
        k_step *= 2
    kept_ops: dict[str, dict[str, int]] = {}
    for n in (n for n in compute if n.name in kept):
        ops = kept_ops.setdefault(kept[n.name].split(":")[0], {})
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    notes = () if where == EMULATION else (
        "parity judged on the x86 host: its CPU EP runs fp16 nodes in fp32 between inserted Casts, so this shows "
        "weight and storage rounding only, not fp16 math; judge on arm64 emulation or a device",)
    return m16, Fp16Result(dict(kept), kept_ops, len(compute) - len(kept), tuple(parity), where, threshold,
                           model.ByteSize(), m16.ByteSize(), rounds, notes)


# preparation ------------------------------------------------------------------------------------------------
def _prepared(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every node named uniquely; refuses fp16 and control-flow models."""
    if not isinstance(model, onnx.ModelProto):
        raise UnsupportedError(f"convert_fp16: expected an onnx.ModelProto, got {type(model).__name__}")
    g = model.graph
    f16 = TensorProto.FLOAT16
    half = [t.name for t in g.initializer if t.data_type == f16]
    half += [v.name for v in (*g.input, *g.output, *g.value_info) if v.type.tensor_type.elem_type == f16]
    half += [n.name for n in g.node if n.op_type == "Cast" and _cast_to(n) == f16]
    if half:
        raise UnsupportedError(f"convert_fp16: the model already has float16 tensors or casts ({half[0]!r} and "
                               f"{len(half) - 1} more): give the fp32 model")
    flow = sorted({n.op_type for n in g.node if n.op_type in _CONTROL_FLOW})
    if flow:
        raise UnsupportedError(f"convert_fp16: control flow ({', '.join(flow)}) is not supported: ranges of "
                               "subgraph tensors cannot be measured")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    used = {n.name for n in m.graph.node if n.name}
    seen: set[str] = set()
    for i, n in enumerate(m.graph.node):
        if not n.name or n.name in seen:
            name = f"{n.op_type}_{i}"
            while name in used or name in seen:
                name += "_"
            n.name = name
        seen.add(n.name)
    return m


def _where(emulate: bool | None) -> str:
    from ..bench.emulation import qemu_binary, require_root, root_info

    if emulate:
        require_root()  # UnsupportedError with the setup hint
    ready = emulate is None and root_info() is not None and qemu_binary() is not None
    return EMULATION if emulate or ready else HOST


# measuring --------------------------------------------------------------------------------------------------
def _stats(arrays: list[np.ndarray]) -> tuple[float, float]:
    """(max |x| over all samples, median over samples of the median nonzero |x|)."""
    mx, med = 0.0, []
    for a in arrays:
        a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
        if a.size:
            mx = max(mx, float(np.nanmax(a)))
            nz = a[a > 0]
            med.append(float(np.median(nz)) if nz.size else 0.0)
    return mx, float(np.median(med)) if med else 0.0


def _fp32_values(m: onnx.ModelProto, feeds: list[dict], outputs: list[str]) -> tuple[dict, list[dict]]:
    """Every float tensor of the fp32 model on every feed (initializers, graph inputs, node outputs), and the
    graph outputs per feed."""
    names = list(dict.fromkeys(o for n in m.graph.node for o in n.output if o))
    sess = session_with_outputs(m, names, origin="the fp32 model (with intermediate outputs)",
                                graph_optimization="disable")
    got = [o.name for o in sess.get_outputs()]
    vals: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        for name, v in zip(got, sess.run(got, feed), strict=True):
            vals.setdefault(name, []).append(np.asarray(v))
        for name, v in feed.items():
            vals.setdefault(name, []).append(v)
    for t in m.graph.initializer:
        vals[t.name] = [numpy_helper.to_array(t)]
    ref = [{o: vals[o][k] for o in outputs} for k in range(len(feeds))]
    return {n: v for n, v in vals.items() if v and v[0].dtype == np.float32}, ref


def _range_reason(node: onnx.NodeProto, values: dict[str, list[np.ndarray]]) -> str | None:
    for kind, names in (("output", node.output), ("input", node.input)):
        for t in names:
            if t not in values:
                continue
            mx, med = _stats(values[t])
            if not mx <= RANGE_LIMIT:  # also inf / nan
                return f"{kind} {t} max|x| {mx:.3g} > {RANGE_LIMIT:g}"
            if 0 < med < UNDERFLOW:
                return f"{kind} {t} median|x| {med:.3g} underflows fp16"
    return None


def _convert(src: onnx.ModelProto, kept: Mapping[str, str]) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    m = onnx.ModelProto()
    m.CopyFrom(src)
    original = {n.name for n in m.graph.node}
    m = convert_float_to_float16(m, keep_io_types=True, op_block_list=list(KEEP_FP32_OPS),
                                 node_block_list=sorted(kept))
    _skip_round_trips(m.graph, original)
    OnnxModel.graph_topological_sort(m.graph)
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as exc:
        raise ValidationError(f"convert_fp16: the fp16 model fails onnx.checker: {' '.join(str(exc).split())[:300]}"
                              ) from None
    return m  # _parity's host run loads it in ONNX Runtime (ModelError if it cannot)


def _skip_round_trips(g: onnx.GraphProto, original: set[str]) -> None:
    """Between two fp32 nodes (or an fp32 node and a graph input/output) the library writes Cast(fp16) then
    Cast(fp32): that would clamp the very values kept for their range, so the second Cast reads the fp32 tensor."""
    to = {n.output[0]: n for n in g.node if n.op_type == "Cast" and n.name not in original}
    for n in g.node:
        if n.name in original or n.op_type != "Cast" or _cast_to(n) != TensorProto.FLOAT:
            continue
        parent = to.get(n.input[0])
        if parent is not None and _cast_to(parent) == TensorProto.FLOAT16:
            n.input[0] = parent.input[0]
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in [n for n in g.node if n.name not in original and not any(o in read for o in n.output)]:
        g.node.remove(n)


def _cast_to(n: onnx.NodeProto) -> int:
    return next((a.i for a in n.attribute if a.name == "to"), 0)


def _run(m: onnx.ModelProto | bytes, feeds: list[dict], where: str) -> list[dict[str, np.ndarray]]:
    data = m if isinstance(m, bytes) else m.SerializeToString()
    if where == EMULATION:
        from ..bench.emulation import emulated_outputs

        with tempfile.TemporaryDirectory(prefix="edgecompress-fp16-") as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(data)
            return emulated_outputs(path, feeds)
    sess = make_session(data, origin="the fp16 model")
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, f), strict=True)) for f in feeds]


def _diff(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float, float]:
    """(max abs error, that over max |ref|, cosine) of one tensor over the samples; NaN counts as inf."""
    r = np.concatenate([np.asarray(x, np.float64).ravel() for x in ref])
    g = np.concatenate([np.asarray(x, np.float64).ravel() for x in got])
    if r.shape != g.shape or not r.size:
        return (0.0, 0.0, 1.0) if r.shape == g.shape else (math.inf, math.inf, 0.0)
    err = np.abs(r - g)
    mx = math.inf if np.isnan(err).any() else float(err.max())
    scale = float(np.max(np.abs(r)))
    rel = mx / scale if scale > 0 else (0.0 if mx == 0 else math.inf)
    den = float(np.linalg.norm(r) * np.linalg.norm(g))
    return mx, rel, (float(r @ g) / den if den > 0 and math.isfinite(den) else float(mx == 0))


def _parity(m16: onnx.ModelProto, feeds: list[dict], ref: list[dict], names: list[str], where: str,
            n_emulated: int) -> list[OutputParity]:
    out = []
    for w in [HOST] + ([EMULATION] if where == EMULATION else []):
        got = _run(m16, feeds[:n_emulated] if w == EMULATION else feeds, w)
        for name in names:
            out.append(OutputParity(name, w, *_diff([x[name] for x in ref[:len(got)]], [x[name] for x in got])))
    return out


def _worst_nodes(src: onnx.ModelProto, m16: onnx.ModelProto, feeds: list[dict], values: dict, floats: set[str],
                 compute: list[onnx.NodeProto], kept: Mapping[str, str], where: str, k: int) -> dict[str, str]:
    """About k more nodes for fp32, from the relative error of every float tensor of the fp16 model (extra
    outputs) against fp32: the nodes whose output error most exceeds their inputs' error; when a node amplifies
    its inputs' error (cancellation, a kept Softmax reading rounded logits), the fp16 nodes that feed it too."""
    produced = {o for n in m16.graph.node for o in n.output}
    alias = {}  # fp32 tensor -> its name in the fp16 model (a kept node's fp32 output is renamed)
    for t in (o for n in src.graph.node for o in n.output if o in floats):
        for a in (t, f"{t}_cast_to_fp16"):
            if a in produced:
                alias[t] = a
                break
    got = _run(serialized_with_outputs(m16, list(dict.fromkeys(alias.values()))), feeds, where)
    err = {t: _diff(values[t][:len(got)], [g[a] for g in got])[1] for t, a in alias.items() if a in got[0]}
    e_out = {n.name: max((err.get(t, 0.0) for t in n.output), default=0.0) for n in compute}
    e_in = {n.name: max((err.get(t, 0.0) for t in n.input), default=0.0) for n in compute}
    producer = {o: n for n in compute for o in n.output}
    picks: dict[str, str] = {}
    for n in sorted(compute, key=lambda n: (e_out[n.name] - e_in[n.name], e_out[n.name]), reverse=True):
        o, i = e_out[n.name], e_in[n.name]
        if len(picks) >= k or not o > i:
            break
        if n.name not in kept:
            picks[n.name] = f"error: output rel err {o:.3g} (inputs {i:.3g})"
        if o > AMPLIFY * i:
            for p in (producer[t] for t in n.input if t in producer):
                if p.name not in kept and p.name not in picks:
                    picks[p.name] = f"error: feeds {n.name}, which amplifies fp16 rounding ({i:.3g} -> {o:.3g})"
    if not picks:  # the error is not attributable to a node: the remaining nodes nearest the outputs go
        picks = {n.name: f"error: output rel err {e_out[n.name]:.3g}"
                 for n in [n for n in compute if n.name not in kept][::-1][:k]}
    return picks
