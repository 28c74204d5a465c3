"""Op census of an ONNX graph: op histogram, parameter count, MACs, quantization state, int8 coverage.

Read-only helpers over an `onnx.ModelProto` (no ONNX Runtime, no torch):

* `op_histogram(model)`   -> {"Conv": 3, "com.microsoft.QGemm": 1, ...} (non-default domains qualified)
* `count_params(model)`   -> number of initializer elements (optionally without quantization bookkeeping)
* `count_macs(model)`     -> `MacReport` (Conv, ConvTranspose, Gemm, MatMul and their quantized forms)
* `quant_state(model)`    -> "none" | "qdq" | "qoperator" | "dynamic" | "weight-only"
* `weight_census(model)`  -> every initializer by storage format ("fp32", "fp16", "int8 per-channel",
  "4-bit block 32", ...): tensors, logical weights, bytes, bits per weight; `weight_format_label` names it
* `consumers(graph)`      -> tensor name -> the nodes that read it
* `int8_census(model)`    -> how many Conv/MatMul/Gemm run in int8 vs float (QDQ node units, QOperator,
  Integer and ORT contrib ops understood), usable on ONNX Runtime's optimized graph.

Symbolic or unknown dimensions count as 1 in MACs; every such dimension is reported in `MacReport.symbolic`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import ConfigError

DEFAULT_DOMAINS = ("", "ai.onnx")
MS = "com.microsoft"

# (domain, op_type) -> (family, index of the data input, index of the weight input, kind)
# kind: "conv", "convT", "gemm", "matmul"
_MAC_OPS: dict[tuple[str, str], tuple[str, int, int, str]] = {
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

# ops whose presence means the graph holds quantized compute in "QOperator" form
_QOPERATOR_OPS = {("", "QLinearConv"), ("", "QLinearMatMul"), (MS, "QLinearConv"), (MS, "QLinearConvTranspose"),
                  (MS, "QGemm"), (MS, "QLinearAdd"), (MS, "QLinearMul"), (MS, "QLinearSigmoid"),
                  (MS, "QLinearLeakyRelu"), (MS, "QLinearAveragePool"), (MS, "QLinearGlobalAveragePool"),
                  (MS, "QLinearConcat"), (MS, "QLinearSoftmax"), (MS, "QLinearWhere"), (MS, "QAttention"),
                  (MS, "QLinearReduceMean")}
# ops of dynamic (runtime-computed activation scale) quantization
_DYNAMIC_OPS = {("", "DynamicQuantizeLinear"), ("", "MatMulInteger"), ("", "ConvInteger"),
                (MS, "DynamicQuantizeMatMul"), (MS, "MatMulIntegerToFloat"), (MS, "DynamicQuantizeLSTM")}
# weight-only low-bit ops of ONNX Runtime (float activations, block-quantized constant weights)
_WEIGHT_ONLY_OPS = {(MS, "MatMulNBits"), (MS, "GatherBlockQuantized"), (MS, "MatMulBnb4"), (MS, "MatMulFpQ4")}
_Q = {("", "QuantizeLinear"), (MS, "QuantizeLinear")}
_DQ = {("", "DequantizeLinear"), (MS, "DequantizeLinear")}
# op -> positions of scale / zero-point inputs (quantization bookkeeping, not model parameters)
_QPARAM_INPUTS: dict[str, tuple[int, ...]] = {
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "QLinearConv": (1, 2, 4, 5, 6, 7),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7), "MatMulInteger": (2, 3), "ConvInteger": (2, 3),
    "QGemm": (1, 2, 4, 5, 7, 8), "MatMulIntegerToFloat": (2, 3, 4, 5), "DynamicQuantizeMatMul": (2, 3),
    "QLinearAdd": (1, 2, 4, 5, 6, 7), "QLinearMul": (1, 2, 4, 5, 6, 7),
    "MatMulNBits": (2, 3, 4), "GatherBlockQuantized": (2, 3), "MatMulBnb4": (2,),
}
_8BIT = {TensorProto.INT8, TensorProto.UINT8}


def _dom(node: onnx.NodeProto) -> str:
    return "" if node.domain in DEFAULT_DOMAINS else node.domain


def _qualified(node: onnx.NodeProto) -> str:
    d = _dom(node)
    return f"{d}.{node.op_type}" if d else node.op_type


def subgraphs(node: onnx.NodeProto):
    """The control-flow bodies (If branches, Loop/Scan bodies) held in a node's attributes."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def all_nodes(graph: onnx.GraphProto):
    """Every node of `graph` and of its control-flow bodies, at any depth."""
    for n in graph.node:
        yield n
        for g in subgraphs(n):
            yield from all_nodes(g)


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes of `graph` (not its subgraphs) that take it as an input, once per use."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def node_names(graph: onnx.GraphProto) -> list[str]:
    """A unique display name per node of `graph` (its name, or `<op_type>_<index>` when empty/duplicated)."""
    seen: set[str] = set()
    out = []
    for i, n in enumerate(graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        out.append(name)
    return out


# ----------------------------------------------------------------------------------------------- histogram, params


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Count of each op type in the graph and its subgraphs, most frequent first; 'domain.Op' outside ai.onnx."""
    counts = Counter(_qualified(n) for n in all_nodes(model.graph))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _numel(t: TensorProto) -> int:
    return int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1


def quant_param_names(model: onnx.ModelProto) -> set[str]:
    """Names of tensors used only as scales / zero points of quantization ops."""
    used_other: set[str] = set()
    used_q: set[str] = set()
    for n in all_nodes(model.graph):
        pos = _QPARAM_INPUTS.get(n.op_type, ())
        for i, name in enumerate(n.input):
            if name:
                (used_q if i in pos else used_other).add(name)
    return used_q - used_other


def packed_weights(model: onnx.ModelProto) -> dict[str, tuple[int, int, int]]:
    """Initializers holding several low-bit weights per byte -> (logical weights, bits, block size).

    MatMulNBits / MatMulBnb4 B (uint8, K x N weights of `bits` bits) and GatherBlockQuantized uint8 data (two
    4-bit values per byte along `quantize_axis`); int4/uint4 tensors are stored with their logical dims."""
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, tuple[int, int, int]] = {}
    for n in all_nodes(model.graph):
        key = (_dom(n), n.op_type)
        if key in ((MS, "MatMulNBits"), (MS, "MatMulBnb4")) and len(n.input) > 1 and n.input[1] in inits:
            bits = int(attr(n, "bits", 4)) if n.op_type == "MatMulNBits" else 4
            out[n.input[1]] = (int(attr(n, "K", 0)) * int(attr(n, "N", 0)), bits, int(attr(n, "block_size", 0)))
        elif key == (MS, "GatherBlockQuantized") and n.input and n.input[0] in inits:
            t = inits[n.input[0]]
            if t.data_type == TensorProto.UINT8:
                bits = int(attr(n, "bits", 4))
                out[t.name] = (_numel(t) * (8 // bits), bits, int(attr(n, "block_size", 0)))
    return out


def count_params(model: onnx.ModelProto, *, exclude_quant_params: bool = False) -> int:
    """Weights in the initializers (and Constant nodes' tensors); scales/zero points optionally excluded.

    Packed low-bit tensors (MatMulNBits B, GatherBlockQuantized uint8 data) count their logical weights, not
    bytes, so a 4-bit model has the parameter count of its float original."""
    skip = quant_param_names(model) if exclude_quant_params else set()
    packed = packed_weights(model)
    total = sum(packed[t.name][0] if t.name in packed else _numel(t) for t in model.graph.initializer
                if t.name not in skip)
    for n in model.graph.node:
        if n.op_type == "Constant" and _dom(n) == "" and n.output[0] not in skip:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    total += _numel(a.t)
    return total


# ------------------------------------------------------------------------------------------------------- shapes


def _infer(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True), []
    except Exception as exc:  # onnx raises InferenceError/ValueError/RuntimeError; the census degrades gracefully
        text = " ".join(str(exc).split())[:200]
        return model, [f"shape inference failed ({type(exc).__name__}: {text}); using the shapes stored in the file"]


Dim = int | str | None  # int: static, str: symbolic name, None: unknown


def _value_infos(model: onnx.ModelProto) -> tuple[dict[str, tuple[Dim, ...] | None], dict[str, int]]:
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
        if n.op_type == "Constant" and _dom(n) == "":
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
            out.append(-(-(d - dil[i] * (k[i] - 1)) // strides[i]))
        else:
            out.append((d + pads[i] + pads[i + r] - dil[i] * (k[i] - 1) - 1) // strides[i] + 1)
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
        if any(s is None for s in data):
            return None
        return _broadcast(data[0], data[1])
    if op in ("MatMulNBits", "MatMulBnb4") and node.domain == MS:
        n_out = int(attr(node, "N", 0))
        return (*x[:-1], n_out) if n_out > 0 and len(x) >= 1 else None
    if op == "GatherBlockQuantized" and node.domain == MS and len(ins) > 1 and ins[1] is not None:
        data = list(x)
        qaxis = int(attr(node, "quantize_axis", 1)) % max(len(data), 1)
        if node.input[0] in consts_types and consts_types[node.input[0]] == TensorProto.UINT8:
            if not isinstance(data[qaxis], int):
                return None
            data[qaxis] = data[qaxis] * (8 // int(attr(node, "bits", 4)))
        gaxis = int(attr(node, "gather_axis", 0)) % max(len(data), 1)
        return (*data[:gaxis], *ins[1], *data[gaxis + 1:])
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


def attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """The value of attribute `name` of `node` (onnx.helper.get_attribute_value), or `default`."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


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
        m, kk = (x[1], x[0]) if ta else (x[0], x[1])
        nn = w[0] if tb else w[1]
        return dims.val(m, name, "rows") * dims.val(kk, name, "inner") * dims.val(nn, name, "cols")
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
    bx = [1] * (rank - len(bx)) + bx
    bw = [1] * (rank - len(bw)) + bw
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
    inferred, notes = _infer(model)
    shapes, _ = _value_infos(inferred)
    dims = _Dims()
    by_op: Counter[str] = Counter()
    per_node: dict[str, int] = {}
    uncounted: list[str] = []
    fallback: dict[str, tuple[Dim, ...] | None] | None = None
    for node, name in zip(inferred.graph.node, node_names(inferred.graph), strict=True):
        spec = _MAC_OPS.get((_dom(node), node.op_type))
        if spec is None:
            continue
        family, xi, wi, kind = spec
        macs = _node_macs(node, name, kind, xi, wi, shapes, dims)
        if macs is None:
            if fallback is None:
                fallback = propagate_shapes(inferred.graph, shapes)
            macs = _node_macs(node, name, kind, xi, wi, fallback, dims)
        if macs is None:
            uncounted.append(f"{name} ({_qualified(node)}): operand shapes unknown")
            continue
        per_node[name] = int(macs)
        by_op[_qualified(node)] += int(macs)
    return MacReport(total=int(sum(per_node.values())), by_op_type=dict(by_op), per_node=per_node,
                     symbolic=notes + dims.notes(), uncounted=uncounted)


# -------------------------------------------------------------------------------------------- quantization state


def quant_state(model: onnx.ModelProto) -> str:
    """'qoperator' (QLinear*/QGemm ops), 'dynamic' (DynamicQuantizeLinear / *Integer ops), 'qdq'
    (QuantizeLinear/DequantizeLinear around float ops, incl. weight-only DequantizeLinear), 'weight-only'
    (ONNX Runtime's block-quantized weight ops: MatMulNBits, GatherBlockQuantized, MatMulBnb4), or 'none'.

    fp16/bf16 weights are not quantization ('none'); `weight_census` tells them apart."""
    ops = {(_dom(n), n.op_type) for n in all_nodes(model.graph)}
    if ops & _QOPERATOR_OPS:
        return "qoperator"
    if ops & _DYNAMIC_OPS:
        return "dynamic"
    if ops & _Q:
        return "qdq"
    if ops & _WEIGHT_ONLY_OPS:
        return "weight-only"
    if ops & _DQ:
        return "qdq"
    return "none"


def _dq_input_type(dq: onnx.NodeProto, types: dict[str, int], producers: dict[str, onnx.NodeProto]) -> int | None:
    """Element type of a DequantizeLinear's quantized input (from the tensor, its Q producer, or the zero point)."""
    src = dq.input[0]
    if src in types:
        return types[src]
    prod = producers.get(src)
    if prod is not None and (_dom(prod), prod.op_type) in _Q:
        out_dtype = int(attr(prod, "output_dtype", 0))
        if out_dtype:
            return out_dtype
        if len(prod.input) > 2 and prod.input[2] in types:
            return types[prod.input[2]]
        return TensorProto.UINT8
    if len(dq.input) > 2 and dq.input[2] in types:
        return types[dq.input[2]]
    return None


def _precision(elem: int | None) -> str:
    if elem is None or elem in _8BIT:
        return "int8"
    name = TensorProto.DataType.Name(elem).lower()
    return name  # int16, uint16, int4, uint4, float8e4m3fn, ...


def int8_census(model: onnx.ModelProto) -> dict[str, Any]:
    """Classify every Conv/ConvTranspose/Gemm/MatMul-like node as int8 (or another quantized precision) or float.

    * QOperator / Integer / ORT contrib ops (QLinearConv, QLinearMatMul, QGemm, ConvInteger, MatMulInteger,
      MatMulIntegerToFloat, DynamicQuantizeMatMul) are quantized.
    * A float op is part of a QDQ node unit (quantized) when both its data input and its weight input come from
      DequantizeLinear; the precision is that of the DequantizeLinear inputs (int8/uint8 -> "int8").
      Weight-only DQ (float activations) counts as float compute.
    * FusedConv/FusedGemm/FusedMatMul (ORT's optimized float graph) are float.
    * MatMulNBits (weight-only block quantization) is "int4 weight-only" / "int8 weight-only" (in "other").

    Returns {"by_op_type": {"Conv": {"int8": n, "float": m}, ...}, "int8": n, "float": m, "other": k,
    "total": n+m+k, "int8_fraction": n/total, "int8_nodes": [...], "float_nodes": [...], "other_nodes": {...}}.
    """
    inferred, _ = _infer(model)
    _, types = _value_infos(inferred)
    producers = {o: n for n in inferred.graph.node for o in n.output if o}
    by_op: dict[str, dict[str, int]] = {fam: {"int8": 0, "float": 0} for fam in ("Conv", "MatMul", "Gemm")}
    int8_nodes: list[str] = []
    float_nodes: list[str] = []
    other_nodes: dict[str, str] = {}
    for node, name in zip(inferred.graph.node, node_names(inferred.graph), strict=True):
        key = (_dom(node), node.op_type)
        spec = _MAC_OPS.get(key)
        if spec is None:
            continue
        family, xi, wi, _kind = spec
        counts = by_op.setdefault(family, {"int8": 0, "float": 0})
        if key in _WEIGHT_ONLY_OPS:  # float activations (accuracy_level may compute in int8), low-bit weights
            bits = int(attr(node, "bits", 4)) if node.op_type == "MatMulNBits" else 4
            prec = f"int{bits} weight-only"
        elif key in _QOPERATOR_OPS or key in _DYNAMIC_OPS:
            prec = _precision(types.get(node.input[wi]) if wi < len(node.input) else None)
        else:
            srcs = [producers.get(node.input[i]) if i < len(node.input) else None for i in (xi, wi)]
            if all(s is not None and (_dom(s), s.op_type) in _DQ for s in srcs):
                precs = {_precision(_dq_input_type(s, types, producers)) for s in srcs}
                prec = "int8" if precs == {"int8"} else "+".join(sorted(precs))
            else:
                prec = "float"
        if prec == "int8":
            counts["int8"] += 1
            int8_nodes.append(name)
        elif prec == "float":
            counts["float"] += 1
            float_nodes.append(name)
        else:
            counts[prec] = counts.get(prec, 0) + 1
            other_nodes[name] = prec
    n8, nf, no = len(int8_nodes), len(float_nodes), len(other_nodes)
    total = n8 + nf + no
    return {"by_op_type": by_op, "int8": n8, "float": nf, "other": no, "total": total,
            "int8_fraction": (n8 / total) if total else 0.0, "int8_nodes": int8_nodes, "float_nodes": float_nodes,
            "other_nodes": other_nodes}


# ------------------------------------------------------------------------------------------------ weight formats

_FLOAT_NAMES = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16",
                TensorProto.DOUBLE: "fp64"}
# QOperator / Integer ops: (weight input, its scale input or None)
_QOP_WEIGHT = {"QLinearConv": (3, 4), "QLinearMatMul": (3, 4), "QGemm": (3, 4), "QLinearConvTranspose": (3, 4),
               "MatMulInteger": (1, None), "ConvInteger": (1, None), "DynamicQuantizeMatMul": (1, 2),
               "MatMulIntegerToFloat": (1, 3)}


def tensor_nbytes(t: TensorProto) -> int:
    """Bytes of a tensor's data as stored (int4/uint4: two per byte; packed uint8 tensors: their bytes)."""
    n = _numel(t)
    if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
        return (n + 1) // 2
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 1
    return n * itemsize


def _dtype_name(elem: int) -> str:
    return _FLOAT_NAMES.get(elem) or TensorProto.DataType.Name(elem).lower()


def _granularity(scale: TensorProto | None, block: int) -> str:
    if block:
        return f"block {block}"
    return "per-tensor" if scale is None or _numel(scale) == 1 else "per-channel"


def weight_census(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """The initializers grouped by storage format, most weights first.

    Formats: "4-bit block 32" / "8-bit block 32" (MatMulNBits, GatherBlockQuantized), "int8 per-channel" /
    "int4 block 32" / ... (DequantizeLinear and QOperator weights), "fp32" / "fp16" / "bf16" (float tensors),
    other dtypes by name ("int64": shape constants, indices), and "quantization parameters" for scales/zero points
    of no weight in an initializer. Each row: format, kind (block | quantized | float | other), tensors, weights
    (logical count: a packed 4-bit byte holds two), bytes (stored), overhead_bytes (the scales/zero points serving
    these weights), bits_per_weight ((bytes + overhead) * 8 / weights), ops (consumers), names.
    """
    inits = {t.name: t for t in model.graph.initializer}
    packed = packed_weights(model)
    role: dict[str, tuple[str, str]] = {}  # tensor -> (format, kind)
    owner: dict[str, str] = {}  # scale / zero point / g_idx tensor -> the format it serves
    ops: dict[str, set[str]] = {}
    for n in all_nodes(model.graph):
        key, ins = (_dom(n), n.op_type), list(n.input)
        for name in ins:
            if name in inits:
                ops.setdefault(name, set()).add(_qualified(n))
        fmt, kind, aux = None, "", ()
        if key in ((MS, "MatMulNBits"), (MS, "MatMulBnb4")) and len(ins) > 1 and ins[1] in packed:
            _, bits, block = packed[ins[1]]
            fmt, kind, w, aux = f"{bits}-bit block {block}", "block", ins[1], (2, 3, 4)
        elif key == (MS, "GatherBlockQuantized") and ins and ins[0] in inits:
            t = inits[ins[0]]
            bits = packed[t.name][1] if t.name in packed else (4 if t.data_type in (TensorProto.INT4, TensorProto.UINT4)
                                                               else 8)
            fmt, kind, w, aux = f"{bits}-bit block {int(attr(n, 'block_size', 0))}", "block", ins[0], (2, 3)
        elif key in _DQ and ins and ins[0] in inits and inits[ins[0]].data_type not in _FLOAT_NAMES:
            scale = inits.get(ins[1]) if len(ins) > 1 else None
            fmt = f"{_dtype_name(inits[ins[0]].data_type)} {_granularity(scale, int(attr(n, 'block_size', 0)))}"
            kind, w, aux = "quantized", ins[0], (1, 2)
        elif key[0] in ("", MS) and n.op_type in _QOP_WEIGHT:
            wi, si = _QOP_WEIGHT[n.op_type]
            if wi < len(ins) and ins[wi] in inits:
                scale = inits.get(ins[si]) if si is not None and si < len(ins) else None
                fmt = f"{_dtype_name(inits[ins[wi]].data_type)} {_granularity(scale, 0)}"
                kind, w, aux = "quantized", ins[wi], tuple(_QPARAM_INPUTS.get(n.op_type, ()))
        if fmt is None:
            continue
        role[w] = (fmt, kind)
        for i in aux:
            if i < len(ins) and ins[i] in inits and ins[i] != w:
                owner.setdefault(ins[i], fmt)
    qparams = quant_param_names(model)
    rows: dict[str, dict[str, Any]] = {}

    def row(fmt: str, kind: str) -> dict[str, Any]:
        return rows.setdefault(fmt, {"format": fmt, "kind": kind, "tensors": 0, "weights": 0, "bytes": 0,
                                     "overhead_bytes": 0, "ops": set(), "names": []})

    for t in model.graph.initializer:
        nbytes = tensor_nbytes(t)
        if t.name in role:
            r = row(*role[t.name])
            r["tensors"] += 1
            r["weights"] += packed[t.name][0] if t.name in packed else _numel(t)
            r["bytes"] += nbytes
            r["names"].append(t.name)
            r["ops"] |= ops.get(t.name, set())
            continue
        if t.name in owner and t.name not in role:
            row(owner[t.name], "block")["overhead_bytes"] += nbytes  # the row exists or is filled below
            continue
        if t.name in qparams:
            r = row("quantization parameters", "other")
        elif t.data_type in _FLOAT_NAMES:
            r = row(_FLOAT_NAMES[t.data_type], "float")
        else:
            r = row(_dtype_name(t.data_type), "other")
        r["tensors"] += 1
        r["weights"] += _numel(t)
        r["bytes"] += nbytes
        r["names"].append(t.name)
        r["ops"] |= ops.get(t.name, set())
    for fmt, kind in role.values():  # a row created by an overhead tensor first gets its real kind
        rows[fmt]["kind"] = kind
    out = []
    for r in rows.values():
        r["ops"] = sorted(r["ops"])
        r["bits_per_weight"] = round((r["bytes"] + r["overhead_bytes"]) * 8 / r["weights"], 3) if r["weights"] else 0.0
        out.append(r)
    return sorted(out, key=lambda r: (-r["weights"], r["format"]))


def weight_format_label(rows: list[dict[str, Any]]) -> str:
    """One line naming the weight format: "int4 weight-only, block 32", "int8 per-channel", "fp16", "fp32"
    ("+" joins several; the float format of the remaining weights is added when it is not fp32)."""
    parts: list[str] = []
    for r in rows:
        if r["kind"] == "block":
            bits, _, block = r["format"].partition("-bit block ")
            parts.append(f"int{bits} weight-only, block {block}")
        elif r["kind"] == "quantized":
            parts.append(r["format"])
    floats = [r for r in rows if r["kind"] == "float"]
    main_float = floats[0]["format"] if floats else None  # rows are sorted by weights
    if not parts:
        return main_float or "none"
    if main_float and main_float != "fp32":
        parts.append(main_float)
    return " + ".join(dict.fromkeys(parts))
