"""`inspect(path) -> InspectReport`: what an ONNX file holds (I/O, opset, ops, params, MACs, quantization, size,
weight formats: fp32 / fp16 / int8 / 4-bit block-quantized ...).

Read-only and torch-free: `edgecompress inspect` must stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ..errors import ModelError
from .census import (
    MacReport,
    count_macs,
    count_params,
    int8_census,
    op_histogram,
    quant_state,
    tensor_nbytes,
    weight_census,
    weight_format_label,
)
from .io import external_tensors, input_specs, load_model, opset_version, output_specs


@dataclass(frozen=True)
class InspectReport:
    path: str
    file_size_bytes: int
    total_size_bytes: int  # the .onnx plus its external data files
    ir_version: int
    opset: int
    opsets: dict[str, int]
    producer: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    symbolic_dims: list[str]
    nodes: int
    op_histogram: dict[str, int]
    params: int
    params_bytes: int
    macs: MacReport
    quantization: str
    int8: dict[str, Any]
    external_data: list[dict[str, Any]] = field(default_factory=list)
    checker: str = "ok"
    notes: list[str] = field(default_factory=list)
    dim_values: dict[str, int] = field(default_factory=dict)  # symbolic dims fixed for the MAC count
    weight_format: str = ""  # "fp32", "fp16", "int8 per-channel", "int4 weight-only, block 32", ...
    weights: list[dict[str, Any]] = field(default_factory=list)  # census.weight_census rows

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["macs"] = self.macs.to_dict()
        return out


def _external_info(model: onnx.ModelProto, base: Path) -> list[dict[str, Any]]:
    """One row per external data file: location, size on disk, tensors stored there."""
    files: dict[str, dict[str, Any]] = {}
    for t in external_tensors(model):
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        if os.path.isabs(loc) or ".." in Path(loc).parts:
            raise ModelError(f"model {base}: external data location {loc!r} escapes the model's folder")
        row = files.setdefault(loc, {"location": loc, "tensors": 0, "bytes": 0})
        row["tensors"] += 1
    for loc, row in files.items():
        p = base / loc
        if not p.is_file():
            raise ModelError(f"model: external data file {loc!r} is missing next to the model",
                             hint="keep the .data file next to the .onnx file")
        row["bytes"] = p.stat().st_size
    return sorted(files.values(), key=lambda r: r["location"])


def inspect(path: str | os.PathLike[str], *, dim_values: Mapping[str, int] | None = None) -> InspectReport:
    """Load `path` (without its external data) and describe it; a file that is not ONNX raises ModelError.

    `dim_values` ({"seq": 128}) sets symbolic dims for the MAC count (otherwise they count as 1)."""
    p = Path(path)
    model = load_model(p, load_external=False, check=False)
    external = _external_info(model, p.parent)
    notes: list[str] = []
    try:
        onnx.checker.check_model(str(p))
        checker = "ok"
    except Exception as exc:  # onnx's ValidationError and C++ errors: reported, not fatal, for inspection
        checker = " ".join(str(exc).split())[:300]
        notes.append("the ONNX checker rejects this model (see 'checker')")
    ins, outs = input_specs(model), output_specs(model)
    symbolic = sorted({str(d) if d else "?" for spec in ins + outs for d in spec.shape if not isinstance(d, int)})
    macs = count_macs(model, dim_values)
    state = quant_state(model)
    census = int8_census(model) if state != "none" else {}
    int8 = {k: census[k] for k in ("int8", "float", "other", "total", "int8_fraction", "by_op_type")} if census else {}
    if census.get("other_nodes"):
        int8["other_nodes"] = dict(census["other_nodes"])
    weights = weight_census(model)
    size = p.stat().st_size
    opsets = {(imp.domain or "ai.onnx"): int(imp.version) for imp in model.opset_import}
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    return InspectReport(
        path=str(p), file_size_bytes=size, total_size_bytes=size + sum(r["bytes"] for r in external),
        ir_version=int(model.ir_version), opset=opset_version(model), opsets=opsets, producer=producer,
        inputs=[s.to_dict() for s in ins], outputs=[s.to_dict() for s in outs], symbolic_dims=symbolic,
        nodes=len(model.graph.node), op_histogram=op_histogram(model), params=count_params(model),
        params_bytes=sum(tensor_nbytes(t) for t in model.graph.initializer), macs=macs, quantization=state,
        int8=int8, external_data=external, checker=checker, notes=notes, dim_values=dict(dim_values or {}),
        weight_format=weight_format_label(weights), weights=weights)


def human_count(n: float) -> str:
    """12_345_678 -> '12.3M'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def human_bytes(n: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{int(n)} B"
