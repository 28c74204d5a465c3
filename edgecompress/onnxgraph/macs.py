"""Shapes and multiply-accumulates of an ONNX graph: onnx shape inference with a small fallback propagation for
the ops it does not know (ORT contrib ops), then `count_macs(model)` -> `MacReport`.

Symbolic or unknown dimensions count as 1 in MACs; every such dimension is reported in `MacReport.symbolic`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import ConfigError
from .nodes import MS, attr, node_names, op_domain, qualified_op

# (domain, op_type) -> (family, index of the data input, index of the weight input, kind)
# kind: "conv", "convT", "gemm", "matmul"
MAC_OPS: dict[tuple[str, str], tuple[str, int, int, str]] = {
    ("", "Conv"): ("Conv", 0, 1, "conv"),
    ("", "ConvTranspose"): ("ConvTranspose", 0, 1, "convT"),
    ("", "Gemm"): ("Gemm", 0, 1, "gemm"),
    ("", "MatMul"): ("MatMul", 0, 1, "matmul"),
    ("", "QLinearConv"): ("Conv", 0, 3, "conv"),
    ("", "ConvInteger"): ("Conv", 0, 1, "conv"),
    ("", "QLinearMatMul"): ("MatMul", 0, 3, "matmul"),
    ("", "MatMulInteger"): ("MatMul", 0, 1, "matmul"),
    (MS, "FusedConv"): ("Conv", 0, 1, "conv"),
    (MS, "NhwcFusedConv"): ("Conv", 0, 1, "conv"),
    (MS, "QLinearConv"): ("Conv", 0, 3, "conv"),
    (MS, "QLinearConvTranspose"): ("ConvTranspose", 0, 3, "convT"),
    (MS, "FusedGemm"): ("Gemm", 0, 1, "gemm"),
    (MS, "QGemm"): ("Gemm", 0, 3, "gemm"),
    (MS, "FusedMatMul"): ("MatMul", 0, 1, "matmul"),
    (MS, "MatMulIntegerToFloat"): ("MatMul", 0, 1, "matmul"),
    (MS, "DynamicQuantizeMatMul"): ("MatMul", 0, 1, "matmul"),
    # weight-only block quantization: B is packed [N, K/block, block*bits/8]; K and N are attributes
    (MS, "MatMulNBits"): ("MatMul", 0, 1, "nbits"),
    (MS, "MatMulBnb4"): ("MatMul", 0, 1, "nbits"),
}


# ------------------------------------------------------------------------------------------------------- shapes


def try_infer_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    try:
        from .io import infer_shapes  # any size: a model over 2 GB is inferred with its data set aside

        return infer_shapes(model, check_type=False, strict_mode=False, data_prop=True), []
    except Exception as exc:  # onnx raises InferenceError/ValueError/RuntimeError; the census degrades gracefully
        text = " ".join(str(exc).split())[:200]
        return model, [f"shape inference failed ({type(exc).__name__}: {text}); using the shapes stored in the file"]


Dim = int | str | None  # int: static, str: symbolic name, None: unknown


def value_infos(model: onnx.ModelProto) -> tuple[dict[str, tuple[Dim, ...] | None], dict[str, int]]:
    """name -> shape (None when the rank is unknown), name -> elem_type."""
    shapes: dict[str, tuple[Dim, ...] | None] = {}
    types: dict[str, int] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = tt.elem_type
        if not tt.HasField("shape"):
            shapes.setdefault(vi.name, None)
            continue
        dims: list[Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
        shapes[vi.name] = tuple(dims)
    for t in g.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
        types[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant" and op_domain(n) == "":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    shapes[n.output[0]] = tuple(int(d) for d in a.t.dims)
                    types[n.output[0]] = a.t.data_type
    return shapes, types


# ---------------------------------------------------------------------------------------- fallback propagation
# onnx shape inference stops at ops it does not know (the com.microsoft ops of ORT-optimized graphs, e.g.
# QLinearConv with channels_last); this small propagation covers what MAC counting needs.

_SAME_SHAPE = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Gelu", "Erf", "Identity",
               "QuantizeLinear", "DequantizeLinear", "Softmax", "BatchNormalization", "Cast", "Neg", "Sqrt", "Exp",
               "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "LayerNormalization", "Dropout", "Abs",
               "SkipLayerNormalization", "BiasGelu", "FastGelu", "QuickGelu", "Swish", "Mish"}
_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "QLinearAdd", "QLinearMul"}
_CONV_LIKE = {"Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcFusedConv", "MaxPool", "AveragePool",
              "QLinearAveragePool"}


def _known(s: tuple[Dim, ...] | None) -> bool:
    return s is not None and all(isinstance(d, int) or (isinstance(d, str) and d) for d in s)


def _conv_out(node: onnx.NodeProto, x: tuple[Dim, ...], w: tuple[Dim, ...] | None) -> tuple[Dim, ...] | None:
    nhwc = node.op_type.startswith("Nhwc") or bool(attr(node, "channels_last", 0))
    sp = list(x[1:-1] if nhwc else x[2:])
    k = list(w[2:]) if w is not None else list(attr(node, "kernel_shape", []))
    if len(k) != len(sp) or not all(isinstance(d, int) for d in k):
        return None
    ks = cast("list[int]", k)  # every kernel dim is an int (checked above)
    r = len(sp)
    strides = list(attr(node, "strides", [1] * r))
    dil = list(attr(node, "dilations", [1] * r))
    pads = list(attr(node, "pads", [0] * (2 * r)))
    auto = attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    out: list[Dim] = []
    for i, d in enumerate(sp):
        if not isinstance(d, int):
            out.append(None)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-d // strides[i]))
        elif auto == "VALID":
            out.append(-(-(d - dil[i] * (ks[i] - 1)) // strides[i]))
        else:
            out.append((d + pads[i] + pads[i + r] - dil[i] * (ks[i] - 1) - 1) // strides[i] + 1)
    ch = w[0] if w is not None else (x[-1] if nhwc else x[1])
    return (x[0], *out, ch) if nhwc else (x[0], ch, *out)


def _broadcast(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    r = max(len(a), len(b))
    a2, b2 = (1,) * (r - len(a)) + a, (1,) * (r - len(b)) + b
    return tuple(y if x == 1 else x for x, y in zip(a2, b2, strict=True))


def _infer_node(node: onnx.NodeProto, shapes: dict[str, tuple[Dim, ...] | None],
                consts: dict[str, np.ndarray], consts_types: Mapping[str, int] | None = None) -> tuple[Dim, ...] | None:
    consts_types = consts_types or {}
    ins = [shapes.get(i) if i else None for i in node.input]
    x = ins[0] if ins else None
    op = node.op_type
    if x is None:
        return None
    if op in _SAME_SHAPE:
        return x
    if op in _BROADCAST:
        data = ins[:2] if op not in ("QLinearAdd", "QLinearMul") else [ins[0], ins[3] if len(ins) > 3 else None]
        a, b = data[0], data[1]
        if a is None or b is None:
            return None
        return _broadcast(a, b)
    if op in ("MatMulNBits", "MatMulBnb4") and node.domain == MS:
        n_out = int(attr(node, "N", 0))
        return (*x[:-1], n_out) if n_out > 0 and len(x) >= 1 else None
    if op == "GatherBlockQuantized" and node.domain == MS and len(ins) > 1 and (indices := ins[1]) is not None:
        gdata = list(x)
        qaxis = int(attr(node, "quantize_axis", 1)) % max(len(gdata), 1)
        if node.input[0] in consts_types and consts_types[node.input[0]] == TensorProto.UINT8:
            qdim = gdata[qaxis]
            if not isinstance(qdim, int):
                return None
            gdata[qaxis] = qdim * (8 // int(attr(node, "bits", 4)))
        gaxis = int(attr(node, "gather_axis", 0)) % max(len(gdata), 1)
        return (*gdata[:gaxis], *indices, *gdata[gaxis + 1:])
    if op == "Transpose":
        perm = list(attr(node, "perm", list(reversed(range(len(x))))))
        return tuple(x[p] for p in perm) if len(perm) == len(x) else None
    if op == "Flatten":
        axis = int(attr(node, "axis", 1)) % max(len(x), 1)
        if not all(isinstance(d, int) for d in x):
            return None
        return (_prod(x[:axis]), _prod(x[axis:]))
    if op in ("GlobalAveragePool", "GlobalMaxPool", "QLinearGlobalAveragePool"):
        nhwc = bool(attr(node, "channels_last", 0))
        return (x[0], *([1] * (len(x) - 2)), x[-1]) if nhwc else (x[0], x[1], *([1] * (len(x) - 2)))
    if op in _CONV_LIKE:
        wi = 3 if op == "QLinearConv" else 1
        w = ins[wi] if op not in ("MaxPool", "AveragePool", "QLinearAveragePool") and wi < len(ins) else None
        if op not in ("MaxPool", "AveragePool", "QLinearAveragePool") and w is None:
            return None
        return _conv_out(node, x, w)
    if op == "Reshape" and len(node.input) > 1 and node.input[1] in consts:
        target = [int(v) for v in consts[node.input[1]].reshape(-1)]
        if not all(isinstance(d, int) for d in x):
            return None
        out = [x[i] if v == 0 and i < len(x) else v for i, v in enumerate(target)]
        if out.count(-1) == 1:
            rest = _prod(v for v in out if v != -1)
            out[out.index(-1)] = _prod(x) // rest if rest else 0
        return tuple(out)
    return None


def propagate_shapes(graph: onnx.GraphProto, shapes: dict[str, tuple[Dim, ...] | None]
                     ) -> dict[str, tuple[Dim, ...] | None]:
    """Fill the shapes onnx inference left unknown, in graph order, for the ops MAC counting needs."""
    out = dict(shapes)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == TensorProto.INT64}
    types = {t.name: t.data_type for t in graph.initializer}
    for node in graph.node:
        if not node.output or _known(out.get(node.output[0])):
            continue
        try:
            s = _infer_node(node, out, consts, types)
        except (ValueError, TypeError, IndexError, ZeroDivisionError):
            s = None
        if s is not None:
            out[node.output[0]] = s
    return out


# --------------------------------------------------------------------------------------------------------- MACs


@dataclass(frozen=True)
class MacReport:
    """Multiply-accumulates of the compute-heavy ops (Conv/ConvTranspose/Gemm/MatMul and quantized forms)."""

    total: int
    by_op_type: dict[str, int]
    per_node: dict[str, int]
    symbolic: list[str] = field(default_factory=list)  # notes on symbolic/unknown dims counted as 1
    uncounted: list[str] = field(default_factory=list)  # nodes whose shapes could not be found

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_op_type": dict(self.by_op_type), "per_node": dict(self.per_node),
                "symbolic": list(self.symbolic), "uncounted": list(self.uncounted)}


class _Dims:
    """Resolves dims to ints, remembering which symbolic / unknown dims were counted as 1."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}

    def val(self, d: Dim, node: str, what: str) -> int:
        if isinstance(d, int) and d > 0:
            return d
        key = f"'{d}'" if isinstance(d, str) and d else "unknown"
        self.seen.setdefault(key, [])
        where = f"{node} ({what})"
        if where not in self.seen[key]:
            self.seen[key].append(where)
        return 1

    def notes(self) -> list[str]:
        out = []
        for key, where in self.seen.items():
            more = f" (+{len(where) - 3} more)" if len(where) > 3 else ""
            label = f"symbolic dim {key}" if key != "unknown" else "unknown dim"
            out.append(f"{label} counted as 1 in: {', '.join(where[:3])}{more}")
        return out


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _node_macs(node: onnx.NodeProto, name: str, kind: str, xi: int, wi: int,
               shapes: dict[str, tuple[Dim, ...] | None], dims: _Dims) -> int | None:
    def shape(i: int) -> tuple[Dim, ...] | None:
        return shapes.get(node.input[i]) if i < len(node.input) and node.input[i] else None

    x, w = shape(xi), shape(wi)
    y = shapes.get(node.output[0]) if node.output else None
    if kind == "nbits":  # A[..., K] x dequant(B)[K, N]: the packed B's shape says nothing; K and N are attributes
        kk, nn = int(attr(node, "K", 0)), int(attr(node, "N", 0))
        if x is None or not x or kk <= 0 or nn <= 0:
            return None
        return _prod(dims.val(d, name, "rows" if i == len(x) - 2 else "batch") for i, d in enumerate(x[:-1])) * kk * nn
    if kind in ("conv", "convT"):
        if w is None or len(w) < 3:
            return None
        nhwc = node.op_type.startswith("Nhwc") or bool(attr(node, "channels_last", 0))
        k = _prod(dims.val(d, name, "kernel") for d in w[2:])
        if kind == "conv":
            if y is None or len(y) != len(w):
                return None
            spatial = y[1:-1] if nhwc else y[2:]
            n = dims.val(y[0], name, "batch")
            m = dims.val(w[0], name, "out channels")
            c_per_group = dims.val(w[1], name, "in channels")
            return n * m * _prod(dims.val(d, name, "spatial") for d in spatial) * c_per_group * k
        if x is None or len(x) != len(w):
            return None
        n = dims.val(x[0], name, "batch")
        c = dims.val(w[0], name, "in channels")
        m_per_group = dims.val(w[1], name, "out channels")
        return n * c * _prod(dims.val(d, name, "spatial") for d in x[2:]) * m_per_group * k
    if x is None or w is None:
        return None
    if kind == "gemm":
        if len(x) != 2 or len(w) != 2:
            return None
        ta, tb = int(attr(node, "transA", 0)), int(attr(node, "transB", 0))
        rows, inner = (x[1], x[0]) if ta else (x[0], x[1])
        cols = w[0] if tb else w[1]
        return dims.val(rows, name, "rows") * dims.val(inner, name, "inner") * dims.val(cols, name, "cols")
    # matmul with numpy broadcasting; 1-D operands are promoted
    if not x or not w:
        return None
    if node.op_type == "FusedMatMul" and int(attr(node, "transA", 0)) and len(x) >= 2:
        x = x[:-2] + (x[-1], x[-2])
    if node.op_type == "FusedMatMul" and int(attr(node, "transB", 0)) and len(w) >= 2:
        w = w[:-2] + (w[-1], w[-2])
    kk = dims.val(x[-1], name, "inner")
    m = dims.val(x[-2], name, "rows") if len(x) >= 2 else 1
    nn = dims.val(w[-1], name, "cols") if len(w) >= 2 else 1
    bx, bw = list(x[:-2]), list(w[:-2])
    rank = max(len(bx), len(bw))
    one: list[Dim] = [1]
    bx = one * (rank - len(bx)) + bx
    bw = one * (rank - len(bw)) + bw
    batch = 1
    for a, b in zip(bx, bw, strict=True):
        if a == 1:
            batch *= dims.val(b, name, "batch")
        elif b == 1 or a == b:
            batch *= dims.val(a, name, "batch")
        else:
            batch *= max(dims.val(a, name, "batch"), dims.val(b, name, "batch"))
    return batch * m * kk * nn


def with_dim_values(model: onnx.ModelProto, dim_values: Mapping[str, int]) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs/outputs have the named symbolic dims fixed to the given sizes."""
    names = {d.dim_param for vi in list(model.graph.input) + list(model.graph.output)
             for d in vi.type.tensor_type.shape.dim if d.HasField("dim_param")}
    for k, v in dim_values.items():
        if k not in names:
            raise ConfigError(f"dim {k!r} is not a symbolic dim of the model's inputs/outputs "
                              f"({', '.join(sorted(names)) or 'it has none'})")
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"dim {k}: size must be a positive integer, got {v!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in list(out.graph.input) + list(out.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dim_values:
                d.dim_value = int(dim_values[d.dim_param])
    del out.graph.value_info[:]
    return out


def count_macs(model: onnx.ModelProto, dim_values: Mapping[str, int] | None = None) -> MacReport:
    """MACs of Conv, ConvTranspose, Gemm, MatMul and their quantized/fused forms, using onnx shape inference.

    `dim_values` ({"seq": 128}) fixes symbolic input dims before shape inference. Other symbolic dims (batch,
    sequence) and dims shape inference cannot resolve count as 1 and are listed in `symbolic`; nodes whose
    operand shapes are unknown are listed in `uncounted` and contribute 0.
    """
    if dim_values:
        model = with_dim_values(model, dim_values)
    inferred, notes = try_infer_shapes(model)
    shapes, _ = value_infos(inferred)
    dims = _Dims()
    by_op: Counter[str] = Counter()
    per_node: dict[str, int] = {}
    uncounted: list[str] = []
    fallback: dict[str, tuple[Dim, ...] | None] | None = None
    for node, name in zip(inferred.graph.node, node_names(inferred.graph), strict=True):
        spec = MAC_OPS.get((op_domain(node), node.op_type))
        if spec is None:
            continue
        family, xi, wi, kind = spec
        macs = _node_macs(node, name, kind, xi, wi, shapes, dims)
        if macs is None:
            if fallback is None:
                fallback = propagate_shapes(inferred.graph, shapes)
            macs = _node_macs(node, name, kind, xi, wi, fallback, dims)
        if macs is None:
            uncounted.append(f"{name} ({qualified_op(node)}): operand shapes unknown")
            continue
        per_node[name] = int(macs)
        by_op[qualified_op(node)] += int(macs)
    return MacReport(total=int(sum(per_node.values())), by_op_type=dict(by_op), per_node=per_node,
                     symbolic=notes + dims.notes(), uncounted=uncounted)
