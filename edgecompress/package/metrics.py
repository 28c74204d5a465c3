"""The release's numbers: accuracy against labels and the baseline, latency, and the lineage's variants.

Latency comes from, in order: the bench report given to `package()` (reproducible: the same report gives
the same release), else a measurement here when the target is host-compatible and measuring is asked for
(not reproducible; the manifest says so; by default only when a p90 budget needs it), else nothing.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard

from ..data import FeedData
from ..fidelity import judge, label_accuracy, run_outputs


def accuracy_metrics(model: Path, data: FeedData | None, baseline: Path | None, *,
                     session: Any = None) -> dict[str, Any] | None:
    """Top-1 accuracy (with labels), the baseline's, their delta, and the comparison against the baseline over
    every output (edgecompress.fidelity).

    `session`: an open one-thread session of `model` to run instead of opening another."""
    if data is None:
        return None
    out = run_outputs(session if session is not None else str(model), data, origin=PurePosixPath(str(model)).name)
    own = label_accuracy(out, data.labels)
    res: dict[str, Any] = {"samples": data.n, "metric": "top1", "model": None, "baseline": None, "delta": None,
                           "drop": None, "top1_agreement": None, "max_abs_error_vs_baseline": None}
    if own is not None:
        res["model"] = _r(own)
    if baseline is not None:
        ref = run_outputs(str(baseline), data, origin=PurePosixPath(str(baseline)).name)
        rep = judge(ref, out, labels=data.labels)
        head = rep.headline()
        res["max_abs_error_vs_baseline"] = _r(max((o.metrics.get("max_abs", 0.0) for o in rep.outputs), default=0.0))
        if "top1_agreement" in head:
            res["top1_agreement"] = _r(head["top1_agreement"])
        if "accuracy_reference" in head:
            res["baseline"] = _r(head["accuracy_reference"])
        res["fidelity_vs_baseline"] = rep.to_dict()
        if res["model"] is not None and res["baseline"] is not None:
            res["delta"] = _r(res["model"] - res["baseline"])
            res["drop"] = _r(res["baseline"] - res["model"])
    if res["model"] is None and res["top1_agreement"] is None:
        res["metric"] = "none"
    return res


def _r(x: float, nd: int = 6) -> float:
    return float(round(x, nd))


def _as_dict(report: Any) -> dict[str, Any] | None:
    if report is None:
        return None
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if isinstance(report, dict):
        return report
    raise TypeError(f"bench_report must be a BenchReport or its to_dict(), got {type(report).__name__}")


def bench_entry(report: Any, model_path: Path | str) -> tuple[dict[str, Any] | None, list[float]]:
    """The bench report's entry for `model_path` (matched by path, then by file name, then the only one)."""
    d = _as_dict(report)
    if not d:
        return None, []
    models = list(d.get("models") or [])
    want = str(model_path)
    name = PurePosixPath(want).name
    raw_models = list(getattr(report, "models", []) or [])

    def samples(i: int) -> list[float]:
        if i < len(raw_models):
            return [float(x) for x in getattr(raw_models[i], "latencies_ms", ()) or ()]
        return [float(x) for x in models[i].get("latencies_ms", []) or []]

    for i, m in enumerate(models):
        if str(m.get("path")) == want or _same_file(str(m.get("path", "")), want):
            return m, samples(i)
    same_name = [i for i, m in enumerate(models) if PurePosixPath(str(m.get("path", ""))).name == name]
    if len(same_name) == 1:
        return models[same_name[0]], samples(same_name[0])
    if len(models) == 1:
        return models[0], samples(0)
    return None, []


def _same_file(a: str, b: str) -> bool:
    """Same path once resolved, or (when both exist) the same bytes."""
    from ..fsutil import sha256_file

    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
        return pa.is_file() and pb.is_file() and pa.stat().st_size == pb.stat().st_size and \
            sha256_file(pa) == sha256_file(pb)
    except OSError:
        return False


def latency_from_bench(report: Any, model_path: Path | str) -> dict[str, Any] | None:
    entry, samples = bench_entry(report, model_path)
    if entry is None:
        return None
    lat = {k: _r(float(v), 4) for k, v in (entry.get("latency_ms") or {}).items() if _finite(v)}
    d = _as_dict(report) or {}
    return {"source": "bench_report", "where": str(entry.get("where") or d.get("where") or "local"),
            "machine": str(entry.get("machine", "")), "threads": entry.get("threads"), "runs": entry.get("runs"),
            "latency_ms": lat, "samples_ms": [_r(s, 4) for s in samples[:2000]],
            "emulated": bool(entry.get("emulated", False))}


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ------------------------------------------------------------------------------------------------ variants


_SIZE_KEYS = ("size_mb", "model_size_mb", "size")
_ACC_KEYS = ("accuracy", "top1", "eval_accuracy", "acc", "val_accuracy")


def _find_number(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        v = metrics.get(k)
        if _finite(v):
            return float(v)
        if isinstance(v, dict):
            for sub in ("model", "value", "top1", "after", "int8"):
                if _finite(v.get(sub)):
                    return float(v[sub])
    return None


def variant_points(lineage: list[dict[str, Any]], bench_report: Any, release_point: dict[str, Any],
                   baseline_point: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One point per lineage stage (size MB, p90 ms, accuracy where known), plus the baseline and the release."""
    points: list[dict[str, Any]] = []
    if baseline_point:
        points.append(baseline_point)
    for i, rec in enumerate(lineage):
        m = rec.get("metrics") or {}
        path = str(rec.get("path", ""))
        size = _find_number(m, _SIZE_KEYS)
        if size is None and "size_bytes" in m and _finite(m["size_bytes"]):
            size = float(m["size_bytes"]) / 1e6
        acc = _find_number(m, _ACC_KEYS)
        fid = m.get("fidelity")
        if acc is None and isinstance(fid, dict) and fid.get("against") == "labels" and \
                fid.get("metric") in ("top1", "accuracy") and _finite(fid.get("int8")):
            acc = float(fid["int8"])  # the quantize stage's accuracy against labels
        p90 = None
        lat = m.get("latency_ms")
        if isinstance(lat, dict) and _finite(lat.get("p90")):
            p90 = float(lat["p90"])
        if bench_report is not None and path:
            entry, _ = bench_entry(bench_report, path) if named_in(bench_report, path) else (None, [])
            if entry:  # latency and size only: bench's accuracy is on its own (smaller) sample
                p90 = p90 if p90 is not None else (entry.get("latency_ms") or {}).get("p90")
                size = size if size is not None else entry.get("size_mb")
        if isinstance(fid, dict) and fid.get("against") == "labels" and fid.get("metric") in ("top1", "accuracy") \
                and _finite(fid.get("fp32")) and points and points[-1]["kind"] == "lineage" \
                and points[-1]["accuracy"] is None:
            points[-1]["accuracy"] = _opt(fid["fp32"])  # quantize measured its input model on the same labels
        points.append({"label": f"{i + 1}. {rec.get('stage', '?')}", "size_mb": _opt(size), "p90_ms": _opt(p90),
                       "accuracy": _opt(acc), "kind": "lineage"})
    points.append(release_point)
    return points


def named_in(report: Any, path: str) -> bool:
    d = _as_dict(report) or {}
    name = PurePosixPath(path).name
    return any(PurePosixPath(str(m.get("path", ""))).name == name for m in d.get("models") or [])


def _opt(v: Any) -> float | None:
    return _r(float(v), 4) if _finite(v) else None


def find_sensitivity(lineage: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Per-layer sensitivity recorded by a stage (quantize), as (layer, score) sorted by score descending."""
    for rec in reversed(lineage):
        for key, val in (rec.get("metrics") or {}).items():
            if "sensitivity" not in str(key).lower():
                continue
            items: list[tuple[str, float]] = []
            if isinstance(val, dict):
                inner = val.get("per_node") or val.get("layers") or val.get("nodes") or val
                if isinstance(inner, dict):
                    items = [(str(k), float(v)) for k, v in inner.items() if _finite(v)]
                elif isinstance(inner, list):
                    val = inner
            if isinstance(val, list):
                for e in val:
                    if isinstance(e, dict):
                        name = e.get("node") or e.get("name") or e.get("layer")
                        score = next((e[k] for k in ("score", "loss_db", "delta", "error", "sensitivity", "value", "mse")
                                      if _finite(e.get(k))), None)
                        if name is not None and score is not None:
                            items.append((str(name), float(score)))
                    elif isinstance(e, (list, tuple)) and len(e) == 2 and _finite(e[1]):
                        items.append((str(e[0]), float(e[1])))
            if items:
                return sorted(items, key=lambda kv: (-kv[1], kv[0]))
    return []
