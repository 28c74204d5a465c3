"""QuantizeReport: everything the quantize stage decided and measured (the CLI's --json `report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..artifact import config_to_dict


@dataclass(frozen=True)
class QuantizeReport:
    mode: str  # static | dynamic
    mode_reason: str
    format: str  # qdq | qoperator (dynamic: operator form)
    activation_type: str
    weight_type: str
    per_channel: bool
    reduce_range: bool
    calibrator: str  # minmax | percentile | entropy | histogram | runtime (dynamic)
    calibrator_reason: str
    format_reason: str
    target: str
    equalization: dict[str, Any]
    rounding: dict[str, Any]  # output-error weight rounding / clipping (rounding.py): layers, held-out SQNR, applied
    excluded_nodes: list[dict[str, Any]]  # [{"name", "reason"}]
    exclusion_speed_cost: float | None  # int8 without exclusions / with (latency ratio); None when no exclusions
    fidelity: dict[str, Any]  # the deciding numbers + "comparison": FidelityReport.to_dict() on the full evaluation set
    fidelity_data: str  # what the fidelity was measured on
    speed: dict[str, Any]  # fp32_ms, int8_ms, speedup (measured side by side), threads, rounds, measured
    census: dict[str, Any]  # int8 census of ONNX Runtime's optimized graph
    calibration: dict[str, Any]  # method, samples, seconds, peak_rss_mb, rss_growth_mb
    preprocess: dict[str, Any]
    candidates: list[dict[str, Any]]  # every candidate tried: label, fidelity drop, speedup
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size_mb: dict[str, float] = field(default_factory=dict)
    unquantizable_ops: dict[str, int] = field(default_factory=dict)  # op type -> count left fp32 (no ORT int8 form)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


@dataclass(frozen=True)
class WeightOnlyReport:
    """What `quantize --weights int4` decided and measured (weight-only; activations float or int8 in-kernel)."""

    weights: str  # int4
    algorithm: str  # rtn | clip | gptq
    algorithm_reason: str
    block_size: int
    symmetric: bool
    activations: str
    layers: dict[str, Any]  # int4 / int8 counts, kept_float {node: reason}, int8_layers
    layer_error: dict[str, Any]  # relative output error per layer on calibration data (chosen vs rtn)
    embeddings: dict[str, Any]  # Gather tables at 4 bits
    weight_bytes: dict[str, Any]  # fp32 / quantized bytes of the MatMul/Gemm weights
    fidelity: dict[str, Any]
    fidelity_data: str
    speed: dict[str, Any]  # fp32_ms, int4_ms, speedup (side by side), feed shapes
    calibration: dict[str, Any]
    candidates: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    size_mb: dict[str, float] = field(default_factory=dict)
    target: str = ""
    mode: str = "weight-only"

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


@dataclass(frozen=True)
class Fp16Report:
    """What `quantize --precision fp16` kept in fp32 and measured (quantize/fp16.py's Fp16Result, plus the
    held-out comparison on this machine)."""

    target: str
    conversion: dict[str, Any]  # Fp16Result.to_dict(): kept nodes / ops with reasons, parity per output and where
    fidelity: dict[str, Any]  # held-out comparison with fp32 on this machine (ORT's CPU EP)
    fidelity_data: str
    speed: dict[str, Any]
    size_mb: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    mode: str = "fp16"

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)
