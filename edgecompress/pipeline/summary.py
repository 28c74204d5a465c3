"""The final summary: one row per model the pipeline produced (size, p50 latency, accuracy)."""

from __future__ import annotations

import os
from typing import Any


def summarize(state) -> list[dict[str, Any]]:
    """Rows in pipeline order. Latency and accuracy come from the bench stage where it measured the model,
    else from the stage's own metrics (e.g. validation accuracy of a trained / distilled PyTorch model)."""
    bench = {}
    for m in (state.bench or {}).get("models", []):
        bench.setdefault(os.path.realpath(m.get("path", "")), m)
    rows = []
    for art in state.artifacts:
        m = bench.get(os.path.realpath(str(art.path)), {})
        acc = m.get("accuracy")
        if acc is None:
            acc = _first(art.metrics, ("accuracy", "eval_accuracy", "val_accuracy", "student_accuracy",
                                       "accuracy_after"))
        p50 = (m.get("latency_ms") or {}).get("p50")
        rows.append({"stage": art.stage, "format": art.format, "file": os.path.basename(art.path),
                     "size_bytes": os.path.getsize(art.path) if art.path.exists() else None,
                     "p50_ms": p50, "accuracy": acc})
    return rows


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def render(rows: list[dict[str, Any]], stages: list[dict[str, Any]], total_s: float, title: str):
    """A rich Table for stderr."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, just in (("stage", "left"), ("model", "left"), ("size", "right"), ("p50 latency", "right"),
                      ("accuracy", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r["stage"], r["file"], _size(r["size_bytes"]),
                      "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3f} ms",
                      "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%")
    times = Table(title=f"stages ({total_s:.1f}s in all)", title_justify="left")
    for col in ("#", "stage", "status", "time"):
        times.add_column(col)
    for s in stages:
        times.add_row(str(s["index"]), s["stage"], s["status"], f"{s['seconds']:.1f}s")
    return table, times
