"""Loading and saving ONNX models with clear errors and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper

from ..data import TensorSpec
from ..errors import ModelError
from ..fsutil import atomic_write_bytes, require_file
from ..specs import short

MAX_PROTO = 2**31 - 1


def load_model(path: str | os.PathLike[str], *, load_external: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load and sanity-check an ONNX file; every failure is a ModelError naming the file and the cause."""
    p = require_file(path, "model")
    if p.stat().st_size == 0:
        raise ModelError(f"model {p} is empty (0 bytes)")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"model {p} is not a valid ONNX protobuf ({type(exc).__name__}: {short(exc, 300)})") from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"model {p} has an empty graph (not an ONNX model, or a truncated file)")
    if not model.opset_import:
        raise ModelError(f"model {p} declares no opset_import")
    if load_external and has_external(model):
        base = p.parent
        for t in external_tensors(model):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if os.path.isabs(loc) or ".." in Path(loc).parts:
                raise ModelError(f"model {p}: external data location {loc!r} escapes the model's folder")
            if not (base / loc).is_file():
                raise ModelError(f"model {p}: external data file {loc!r} (for tensor {t.name!r}) is missing",
                                 hint="keep the .data file next to the .onnx file")
        try:
            onnx.load_external_data_for_model(model, str(base))
        except (OSError, ValueError) as exc:
            raise ModelError(f"model {p}: cannot read external data ({short(exc, 300)})") from None
    if check:
        check_model(model, str(p))
    return model


def check_model(model: onnx.ModelProto, origin: str = "model") -> None:
    try:
        if model.ByteSize() < MAX_PROTO:
            onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{origin} fails the ONNX checker: {short(exc, 300)}") from None


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The tensors of `model` (initializers, Constant and subgraph tensors) whose data lives in external files."""
    from onnx.external_data_helper import _get_all_tensors  # noqa: PLC2701 - onnx's own helper

    return [t for t in _get_all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]


def has_external(model: onnx.ModelProto) -> bool:
    """True when some tensor of `model` keeps its data in an external file."""
    return bool(external_tensors(model))


def save_model(model: onnx.ModelProto, dest: str | os.PathLike[str]) -> Path:
    """Write `model` to `dest` atomically (a single file; models over 2 GB are refused)."""
    data = model.SerializeToString()
    if len(data) >= MAX_PROTO:
        raise ModelError("model is larger than 2 GB; external data output is not supported yet")
    return atomic_write_bytes(dest, data)


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return ()
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _np_dtype(elem_type: int) -> np.dtype:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype(object)


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Graph inputs that are real inputs (not initializers)."""
    inits = {i.name for i in model.graph.initializer}
    return [TensorSpec(vi.name, _dims(vi), _np_dtype(vi.type.tensor_type.elem_type))
            for vi in model.graph.input if vi.name not in inits]


def output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [TensorSpec(vi.name, _dims(vi), _np_dtype(vi.type.tensor_type.elem_type)) for vi in model.graph.output]


def opset_version(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0
