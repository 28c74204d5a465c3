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
Graph walking (`all_nodes`, `consumers`, `attr`, ...) is in nodes.py and MAC counting in macs.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from .macs import MAC_OPS, MacReport, count_macs, propagate_shapes, try_infer_shapes, value_infos, with_dim_values
from .nodes import (
    DEFAULT_DOMAINS,
    MS,
    all_nodes,
    attr,
    consumers,
    node_names,
    numel,
    op_domain,
    qualified_op,
    subgraphs,
)

# graph walking lives in nodes.py and MAC counting in macs.py; both stay importable from here
__all__ = ["DEFAULT_DOMAINS", "MS", "MacReport", "all_nodes", "attr", "consumers", "count_macs", "count_params",
           "int8_census", "node_names", "op_histogram", "packed_weights", "propagate_shapes", "quant_param_names",
           "quant_state", "subgraphs", "tensor_nbytes", "weight_census", "weight_format_label", "with_dim_values"]

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


# ----------------------------------------------------------------------------------------------- histogram, params


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Count of each op type in the graph and its subgraphs, most frequent first; 'domain.Op' outside ai.onnx."""
    counts = Counter(qualified_op(n) for n in all_nodes(model.graph))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


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
        key = (op_domain(n), n.op_type)
        if key in ((MS, "MatMulNBits"), (MS, "MatMulBnb4")) and len(n.input) > 1 and n.input[1] in inits:
            bits = int(attr(n, "bits", 4)) if n.op_type == "MatMulNBits" else 4
            out[n.input[1]] = (int(attr(n, "K", 0)) * int(attr(n, "N", 0)), bits, int(attr(n, "block_size", 0)))
        elif key == (MS, "GatherBlockQuantized") and n.input and n.input[0] in inits:
            t = inits[n.input[0]]
            if t.data_type == TensorProto.UINT8:
                bits = int(attr(n, "bits", 4))
                out[t.name] = (numel(t) * (8 // bits), bits, int(attr(n, "block_size", 0)))
    return out


def count_params(model: onnx.ModelProto, *, exclude_quant_params: bool = False) -> int:
    """Weights in the initializers (and Constant nodes' tensors); scales/zero points optionally excluded.

    Packed low-bit tensors (MatMulNBits B, GatherBlockQuantized uint8 data) count their logical weights, not
    bytes, so a 4-bit model has the parameter count of its float original."""
    skip = quant_param_names(model) if exclude_quant_params else set()
    packed = packed_weights(model)
    total = sum(packed[t.name][0] if t.name in packed else numel(t) for t in model.graph.initializer
                if t.name not in skip)
    for n in model.graph.node:
        if n.op_type == "Constant" and op_domain(n) == "" and n.output[0] not in skip:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    total += numel(a.t)
    return total


# -------------------------------------------------------------------------------------------- quantization state


def quant_state(model: onnx.ModelProto) -> str:
    """'qoperator' (QLinear*/QGemm ops), 'dynamic' (DynamicQuantizeLinear / *Integer ops), 'qdq'
    (QuantizeLinear/DequantizeLinear around float ops, incl. weight-only DequantizeLinear), 'weight-only'
    (ONNX Runtime's block-quantized weight ops: MatMulNBits, GatherBlockQuantized, MatMulBnb4), or 'none'.

    fp16/bf16 weights are not quantization ('none'); `weight_census` tells them apart."""
    ops = {(op_domain(n), n.op_type) for n in all_nodes(model.graph)}
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
    if prod is not None and (op_domain(prod), prod.op_type) in _Q:
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
    inferred, _ = try_infer_shapes(model)
    _, types = value_infos(inferred)
    producers = {o: n for n in inferred.graph.node for o in n.output if o}
    by_op: dict[str, dict[str, int]] = {fam: {"int8": 0, "float": 0} for fam in ("Conv", "MatMul", "Gemm")}
    int8_nodes: list[str] = []
    float_nodes: list[str] = []
    other_nodes: dict[str, str] = {}
    for node, name in zip(inferred.graph.node, node_names(inferred.graph), strict=True):
        key = (op_domain(node), node.op_type)
        spec = MAC_OPS.get(key)
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
            if all(s is not None and (op_domain(s), s.op_type) in _DQ for s in srcs):
                precs = {_precision(_dq_input_type(s, types, producers)) for s in srcs if s is not None}
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

_FLOAT_NAMES: dict[int, str] = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16",
                                 TensorProto.BFLOAT16: "bf16", TensorProto.DOUBLE: "fp64"}
# QOperator / Integer ops: (weight input, its scale input or None)
_QOP_WEIGHT = {"QLinearConv": (3, 4), "QLinearMatMul": (3, 4), "QGemm": (3, 4), "QLinearConvTranspose": (3, 4),
               "MatMulInteger": (1, None), "ConvInteger": (1, None), "DynamicQuantizeMatMul": (1, 2),
               "MatMulIntegerToFloat": (1, 3)}


def tensor_nbytes(t: TensorProto) -> int:
    """Bytes of a tensor's data as stored (int4/uint4: two per byte; packed uint8 tensors: their bytes)."""
    n = numel(t)
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
    return "per-tensor" if scale is None or numel(scale) == 1 else "per-channel"


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
        key, ins = (op_domain(n), n.op_type), list(n.input)
        for name in ins:
            if name in inits:
                ops.setdefault(name, set()).add(qualified_op(n))
        fmt, kind = None, ""
        aux: tuple[int, ...] = ()
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
            r["weights"] += packed[t.name][0] if t.name in packed else numel(t)
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
        r["weights"] += numel(t)
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
