"""Shared data paths and fixed inputs for the package tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"
EVAL = DATA / "digits_eval.npz"
CALIB = DATA / "digits_calibration.npz"



def bench_report_for(path: Path, p90: float = 0.05) -> dict:
    """A bench report (BenchReport.to_dict() shape) with fixed numbers, so the release is reproducible."""
    lat = {"p50": 0.04, "p90": p90, "p95": p90 * 1.1, "p99": p90 * 1.3, "mean": 0.042, "std": 0.004,
           "min": 0.035, "max": p90 * 1.5}
    return {"models": [{"path": str(path), "threads": 1, "latency_ms": lat, "where": "local", "machine": "x86_64",
                        "runs": 50, "size_mb": 0.01, "emulated": False}], "ratios": [], "target": "host",
            "where": "local"}


def lineage_for(models: dict[str, Path]) -> list[dict]:
    return [
        {"stage": "export", "path": str(models["fp32"]), "format": "onnx", "config": {"opset": 17},
         "metrics": {"size_mb": models["fp32"].stat().st_size / 1e6}},
        {"stage": "quantize", "path": str(models["int8"]), "format": "onnx",
         "config": {"format": "qdq", "calibration": str(CALIB)},
         "metrics": {"sensitivity": {"/features/features.0/Conv": 0.02, "/features/features.4/Conv": 0.011,
                                     "/fc/Gemm": 0.004}}},
    ]
