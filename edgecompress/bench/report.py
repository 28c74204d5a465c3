"""Benchmark results: one `ModelResult` per (model, thread count), `RatioResult` per A/B pair, `BenchReport`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from .qemu import EMULATION_NOTE

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")


@dataclass(frozen=True)
class ModelResult:
    path: str
    threads: int
    latency_ms: dict[str, float]
    throughput_per_s: float
    session_create_ms: float
    first_run_ms: float
    peak_rss_mb: float | None
    size_mb: float
    providers: tuple[str, ...]
    ep_coverage: dict[str, Any]
    runs: int
    requested_providers: tuple[str, ...] = ()
    missing_providers: tuple[str, ...] = ()
    rss_before_load_mb: float | None = None
    where: str = "local"
    machine: str = ""
    onnxruntime: str = ""
    emulated: bool = False
    fidelity: dict[str, Any] | None = None
    accuracy: float | None = None
    emulation: dict[str, Any] | None = None
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {"path": self.path, "threads": self.threads, "latency_ms": dict(self.latency_ms),
             "throughput_per_s": self.throughput_per_s, "session_create_ms": self.session_create_ms,
             "first_run_ms": self.first_run_ms, "peak_rss_mb": self.peak_rss_mb,
             "peak_rss_model_mb": (None if self.peak_rss_mb is None or self.rss_before_load_mb is None
                                   else round(self.peak_rss_mb - self.rss_before_load_mb, 2)),
             "size_mb": self.size_mb, "providers": list(self.providers), "ep_coverage": self.ep_coverage,
             "runs": self.runs, "requested_providers": list(self.requested_providers),
             "missing_providers": list(self.missing_providers), "fell_back_to_cpu": bool(self.missing_providers),
             "where": self.where, "machine": self.machine, "onnxruntime": self.onnxruntime,
             "emulated": self.emulated}
        if self.emulated:
            d["timing_note"] = EMULATION_NOTE
        if self.fidelity is not None:
            d["fidelity"] = self.fidelity
        if self.accuracy is not None:
            d["accuracy"] = self.accuracy
        if self.emulation is not None:
            d["emulated_arm64"] = self.emulation
        return d


@dataclass(frozen=True)
class RatioResult:
    """Latency of `model` over `baseline`, from interleaved rounds; < 1 means `model` is faster."""

    model: str
    baseline: str
    threads: int
    ratio_p50: float
    ratio_mean: float
    spread: dict[str, float]
    rounds: int
    block: int

    @property
    def speedup(self) -> float:
        return 1.0 / self.ratio_p50 if self.ratio_p50 > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "baseline": self.baseline, "threads": self.threads,
                "ratio_p50": self.ratio_p50, "ratio_mean": self.ratio_mean, "speedup": self.speedup,
                "spread": dict(self.spread), "rounds": self.rounds, "block": self.block}


@dataclass(frozen=True)
class BenchReport:
    models: tuple[ModelResult, ...]
    ratios: tuple[RatioResult, ...] = ()
    target: str = "host"
    where: str = "local"
    warnings: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    def result(self, path: str, threads: int | None = None) -> ModelResult:
        for m in self.models:
            if m.path == path and (threads is None or m.threads == threads):
                return m
        raise KeyError(path)

    def to_dict(self) -> dict[str, Any]:
        return {"models": [m.to_dict() for m in self.models], "ratios": [r.to_dict() for r in self.ratios],
                "target": self.target, "where": self.where, "warnings": list(self.warnings), "config": self.config}

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "threads", "where", "emulated", *[f"{k}_ms" for k in LATENCY_KEYS], "throughput_per_s",
                    "session_create_ms", "first_run_ms", "peak_rss_mb", "size_mb", "providers", "runs",
                    "ratio_vs_baseline", "ratio_spread_p10", "ratio_spread_p90"])
        for m in self.models:
            r = next((x for x in self.ratios if x.model == m.path and x.threads == m.threads), None)
            w.writerow([m.path, m.threads, m.where, m.emulated, *[_fmt(m.latency_ms.get(k)) for k in LATENCY_KEYS],
                        _fmt(m.throughput_per_s), _fmt(m.session_create_ms), _fmt(m.first_run_ms),
                        _fmt(m.peak_rss_mb), _fmt(m.size_mb), " ".join(m.providers), m.runs,
                        _fmt(r.ratio_p50) if r else "", _fmt(r.spread.get("p10")) if r else "",
                        _fmt(r.spread.get("p90")) if r else ""])
        return buf.getvalue()


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"
