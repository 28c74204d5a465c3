"""Low-bit and fp16 models in ORT format: what ORT format can hold, and what the conversion did to the weights.

* ORT format's flatbuffer schema has no int4/uint4 tensor type (ONNX Runtime 1.32: `TensorDataType` stops at the
  float8 types): a model with such initializers converts without complaint, then fails to load ("Unsupported
  tensor data type '<unknown>'"). ONNX Runtime's own weight-only quantizer writes the quantized embedding table of
  `com.microsoft.GatherBlockQuantized` (and its zero points) as int4/uint4. The op also takes the same values
  packed two per uint8 byte (low nibble first, `bits=4`, default zero point 8), which ORT format can hold:
  `ort_compatible` rewrites the conversion's copy into that form (the values are identical; the package stage
  checks model.ort against model.onnx). Other int4/uint4 tensors (e.g. int4 DequantizeLinear) are refused with
  the reason.
* `ort_weight_dtypes` reads back the initializer dtypes of a `.ort` file: converting an fp16 graph on a host whose
  CPU kernels are fp32 (MatMul/Gemm on x86) folds Cast nodes into fp32 copies of the weights, which the release
  reports instead of claiming fp16 storage for model.ort.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import UnsupportedError
from ..onnxgraph.census import MS, all_nodes, attr

_INT4 = (TensorProto.INT4, TensorProto.UINT4)


def _pack_nibbles(values: np.ndarray) -> np.ndarray:
    """uint8 values 0..15 -> two per byte along the last axis, low nibble first (odd length padded with 0)."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def ort_compatible(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """(model, notes): `model` itself when ORT format can hold it, else a rewritten copy and what was rewritten.

    Raises UnsupportedError for int4/uint4 tensors no rewrite covers."""
    int4 = {t.name: t for t in model.graph.initializer if t.data_type in _INT4}
    if not int4:
        return model, []
    users: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in all_nodes(model.graph):
        for i, name in enumerate(n.input):
            if name in int4:
                users.setdefault(name, []).append((n, i))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {t.name: t for t in out.graph.initializer}
    data_of = {t.name: t for t in model.graph.initializer}
    copy_of = {id(a): b for a, b in zip(all_nodes(model.graph), all_nodes(out.graph), strict=True)}
    notes: list[str] = []
    refused: list[str] = []
    for name, t in sorted(int4.items()):
        uses = users.get(name, [])
        ok = bool(uses) and all(n.domain == MS and n.op_type == "GatherBlockQuantized" and i in (0, 3)
                                for n, i in uses)
        if ok:
            for n, _ in uses:
                data = data_of.get(n.input[0])
                rank = len(data.dims) if data is not None else 0
                if rank == 0 or int(attr(n, "quantize_axis", 1)) % rank != rank - 1:
                    ok = False
        if not ok:
            ops = sorted({f"{n.op_type} input {i}" for n, i in uses}) or ["no node"]
            refused.append(f"{name} ({TensorProto.DataType.Name(t.data_type).lower()}, read by {', '.join(ops)})")
            continue
        values = numpy_helper.to_array(t)
        u = (values.astype(np.int16) + 8).astype(np.uint8) if t.data_type == TensorProto.INT4 else values.astype(np.uint8)
        packed = _pack_nibbles(u)
        by_name[name].CopyFrom(numpy_helper.from_array(packed, name))
        for n, _ in uses:
            cn = copy_of[id(n)]
            if not any(a.name == "bits" for a in cn.attribute):
                cn.attribute.append(helper.make_attribute("bits", 4))
        notes.append(f"{name}: {TensorProto.DataType.Name(t.data_type).lower()} {list(t.dims)} stored as uint8 "
                     f"{list(packed.shape)} (two 4-bit values per byte, GatherBlockQuantized bits=4) in model.ort")
    if refused:
        raise UnsupportedError(
            "ORT format cannot hold int4/uint4 tensors (ONNX Runtime's ORT format schema has no such type): "
            + "; ".join(refused),
            hint="block-quantize with com.microsoft.MatMulNBits (uint8-packed weights) instead of int4 "
                 "DequantizeLinear, or ship model.onnx without the ORT format")
    return out, notes


def ort_weight_dtypes(ort_bytes: bytes) -> dict[str, dict[str, int]]:
    """{"fp32": {"tensors": n, "weights": m}, "fp16": ..., "uint8": ...} of the initializers in a `.ort` file."""
    from .ortcanon import _cls

    names = {v: k for k, v in vars(_cls("TensorDataType")).items() if isinstance(v, int)}
    short = {"FLOAT": "fp32", "FLOAT16": "fp16", "BFLOAT16": "bf16", "DOUBLE": "fp64"}
    sess = _cls("InferenceSession").GetRootAs(bytearray(ort_bytes), 0)
    graph = sess.Model().Graph()
    out: dict[str, dict[str, int]] = {}
    for i in range(graph.InitializersLength()):
        t = graph.Initializers(i)
        name = names.get(t.DataType(), str(t.DataType()))
        key = short.get(name, name.lower())
        row = out.setdefault(key, {"tensors": 0, "weights": 0})
        row["tensors"] += 1
        row["weights"] += int(np.prod([t.Dims(j) for j in range(t.DimsLength())], dtype=np.int64))
    return dict(sorted(out.items()))


def widened_note(model: onnx.ModelProto, ort_types: dict[str, dict[str, Any]]) -> str | None:
    """A note when model.onnx stores fp16/bf16 weights but model.ort holds fp32 copies of them."""
    low = {TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
    kinds = {low[t.data_type] for t in model.graph.initializer if t.data_type in low}
    if not kinds or "fp32" not in ort_types:
        return None
    kept = sum(ort_types.get(k, {}).get("weights", 0) for k in kinds)
    return (f"model.ort holds {ort_types['fp32']['weights']:,} weights in fp32 ({'/'.join(sorted(kinds))} in "
            f"model.onnx: {kept:,} kept): the conversion ran ONNX Runtime's CPU kernels of this host, which have no "
            f"{'/'.join(sorted(kinds))} MatMul/Gemm, and folded the inserted Casts into fp32 weights; ship model.onnx "
            "for fp16 storage, or convert on a build with fp16 kernels")
