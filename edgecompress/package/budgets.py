"""Target budgets (size, p90 latency, accuracy drop): evaluate, and raise BudgetError naming each violation."""

from __future__ import annotations

from typing import Any

from ..errors import BudgetError
from ..targets import TargetProfile, is_host_compatible


def evaluate(target: TargetProfile, metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{budget: {limit, value, unit, ok (True/False/None = not checkable), note}} for each budget the target sets."""
    b = target.budgets
    out: dict[str, dict[str, Any]] = {}
    size = metrics["size"]
    if b.max_size_mb is not None:
        value = max(size["onnx_mb"], size["ort_mb"] or 0.0)  # ort_mb None: no .ort (a model over 2 GB)
        out["max_size_mb"] = {"limit": b.max_size_mb, "value": value, "unit": "MB", "ok": value <= b.max_size_mb,
                              "note": "largest model file in the release (model.onnx or model.ort)"}
    if b.max_p90_latency_ms is not None:
        lat = metrics.get("latency") or {}
        p90 = (lat.get("latency_ms") or {}).get("p90")
        on_device = lat.get("source") == "bench_report" and lat.get("where") not in (None, "", "local")
        if p90 is None:
            out["max_p90_latency_ms"] = {"limit": b.max_p90_latency_ms, "value": None, "unit": "ms", "ok": None,
                                         "note": "latency not measured"}
        elif lat.get("emulated"):
            out["max_p90_latency_ms"] = {"limit": b.max_p90_latency_ms, "value": p90, "unit": "ms", "ok": None,
                                         "note": "emulated timings say nothing about device speed; not checked"}
        elif is_host_compatible(target) or on_device:
            out["max_p90_latency_ms"] = {"limit": b.max_p90_latency_ms, "value": p90, "unit": "ms",
                                         "ok": p90 <= b.max_p90_latency_ms,
                                         "note": "measured on the device" if on_device else "measured on this host"}
        else:
            out["max_p90_latency_ms"] = {"limit": b.max_p90_latency_ms, "value": p90, "unit": "ms", "ok": None,
                                         "note": "measured on this host, which is not compatible with the target; "
                                                 "not checked (bench on the device to check it)"}
    if b.max_accuracy_drop is not None:
        acc = metrics.get("accuracy") or {}
        drop = acc.get("drop")
        out["max_accuracy_drop"] = {"limit": b.max_accuracy_drop, "value": drop, "unit": "fraction",
                                    "ok": None if drop is None else drop <= b.max_accuracy_drop + 1e-12,
                                    "note": "top-1 accuracy of the baseline minus the release's" if drop is not None
                                    else "needs --baseline and --eval data with labels; not checked"}
    return out


def enforce(results: dict[str, dict[str, Any]], target: TargetProfile) -> None:
    bad = {k: v for k, v in results.items() if v["ok"] is False}
    if not bad:
        return
    parts = []
    for name, r in bad.items():
        over = r["value"] - r["limit"]
        if r["unit"] == "fraction":
            parts.append(f"{name}: accuracy drop {100 * r['value']:.2f}% exceeds {100 * r['limit']:.2f}% "
                         f"(over by {100 * over:.2f} points)")
        else:
            parts.append(f"{name}: {r['value']:.4g} {r['unit']} exceeds {r['limit']:.4g} {r['unit']} "
                         f"(over by {over:.4g} {r['unit']}, +{100 * over / r['limit']:.1f}%)")
    raise BudgetError(f"target {target.name!r} budget violated: " + "; ".join(parts),
                      hint="relax the budget in the target profile or change the recipe; no release was written",
                      report={"budgets": results})
