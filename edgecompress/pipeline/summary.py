"""The final summary: one row per model the pipeline produced (size, p50 latency, accuracy)."""

from __future__ import annotations

import os
from typing import Any


def summarize(state) -> list[dict[str, Any]]:
    """Rows in pipeline order. Latency from the bench stage (where it measured the model); accuracy of every
    ONNX model top-1 on data.eval (the same samples for all, when they have labels), of a PyTorch model its
    stage's own validation metric."""
    bench = {}
    for m in (state.bench or {}).get("models", []):
        bench.setdefault(os.path.realpath(m.get("path", "")), m)
    evaluation = _eval_data(state.recipe.data_spec("eval"))
    rows = []
    for art in state.artifacts:
        m = bench.get(os.path.realpath(str(art.path)), {})
        acc, acc_on = None, None
        if art.format == "onnx" and evaluation is not None:
            acc = eval_accuracy(art.path, evaluation)
            acc_on = "eval" if acc is not None else None
        if acc is None:
            acc = _first(art.metrics, ("accuracy", "val_accuracy"))
            acc_on = "val" if acc is not None else None
        p50 = (m.get("latency_ms") or {}).get("p50")
        rows.append({"stage": art.stage, "format": art.format, "file": os.path.basename(art.path),
                     "size_bytes": os.path.getsize(art.path) if art.path.exists() else None,
                     "p50_ms": p50, "accuracy": acc, "accuracy_on": acc_on})
    return rows


def _eval_data(spec: str):
    if not spec:
        return None
    from ..data import load_data

    data = load_data(spec, what="data.eval")
    return data if data.labels is not None else None


def eval_accuracy(path, data) -> float | None:
    """Top-1 accuracy of an ONNX model's first class-score output on labelled feeds (edgecompress.fidelity;
    None when no output reads as class scores)."""
    from ..fidelity import label_accuracy, run_outputs
    from ..onnxgraph.io import input_specs, load_model

    feeds = data.validated(input_specs(load_model(path)), what="data.eval")
    outs = run_outputs(str(path), feeds, origin=os.path.basename(str(path)))
    return label_accuracy(outs, data.labels)


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
                      "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}% ({r['accuracy_on']})")
    times = Table(title=f"stages ({total_s:.1f}s in all)", title_justify="left")
    for col in ("#", "stage", "status", "time", "cpu"):
        times.add_column(col, justify="left" if col in ("stage", "status") else "right")
    for s in stages:
        times.add_row(str(s["index"]), s["stage"], s["status"], f"{s['seconds']:.1f}s",
                      f"{s.get('cpu_seconds', 0):.1f}s")
    return table, times
