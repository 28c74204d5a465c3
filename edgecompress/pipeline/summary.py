"""The final summary: one row per model the pipeline produced, the baseline first.

The baseline is the model a user replaces: the exported teacher when the chain distils, else the first ONNX
model. Every ONNX row gets its size, its p50 latency and its speed-up against the baseline from the bench
stage's interleaved run (the ratio of the two models' times measured round by round, 1 thread), its fidelity to
the baseline (top-1 agreement, or the comparison module's headline for other outputs) and its accuracy on the
eval split. A stage that made its model slower (measured in the same run) or less accurate than the model it was
given is marked, with the numbers.
"""

from __future__ import annotations

import os
from typing import Any

# a stage is "slower" when the interleaved ratio against its input model says so by more than this (the spread
# of repeated ratios on a quiet machine is a few percent)
SLOWER_BY = 1.03


def summarize(state) -> list[dict[str, Any]]:
    """Rows: the baseline, then the pipeline's models in order (a PyTorch model with its stage's validation
    metric). See the module doc for what each column means."""
    bench: dict[str, dict[str, Any]] = {}
    for m in (state.bench or {}).get("models", []):
        bench.setdefault(os.path.realpath(m.get("path", "")), m)
    ratios = _ratios(state.bench or {})
    evaluation = _eval_data(state.recipe.data_spec("eval"))
    arts = sorted(state.artifacts, key=lambda a: a.stage != "teacher")  # stable: the teacher first
    base = state.baseline
    base_out = _outputs(base.path, evaluation) if base is not None and evaluation is not None else None
    rows: list[dict[str, Any]] = []
    prev: dict[str, Any] | None = None
    for art in arts:
        m = bench.get(os.path.realpath(str(art.path)), {})
        row: dict[str, Any] = {"stage": art.stage, "format": art.format, "file": os.path.basename(art.path),
                               "size_bytes": os.path.getsize(art.path) if art.path.exists() else None,
                               "p50_ms": (m.get("latency_ms") or {}).get("p50"), "speedup": None,
                               "fidelity": None, "fidelity_metric": None, "accuracy": None, "accuracy_on": None,
                               "baseline": base is not None and art.path == base.path, "marks": []}
        if art.format == "onnx":
            r = ratios.get(os.path.realpath(str(art.path)))
            row["speedup"] = 1.0 if row["baseline"] and m else (1.0 / r if r else None)
            if evaluation is not None:
                outs = _outputs(art.path, evaluation)
                row["accuracy"] = _accuracy(outs, evaluation)
                row["accuracy_on"] = "eval" if row["accuracy"] is not None else None
                row["samples"] = evaluation.n
                if base_out is not None and not row["baseline"]:
                    row["fidelity_metric"], row["fidelity"] = _fidelity(base_out, outs)
            if prev is not None:
                row["marks"] = _marks(row, prev)
            prev = row
        if row["accuracy"] is None:
            row["accuracy"] = _first(art.metrics, ("accuracy", "val_accuracy"))
            row["accuracy_on"] = "val" if row["accuracy"] is not None else None
        rows.append(row)
    return rows


def _ratios(bench: dict[str, Any]) -> dict[str, float]:
    """model path -> its time / the bench baseline's (the first model), median over interleaved rounds."""
    out = {}
    for r in bench.get("ratios") or []:
        if r.get("threads", 1) == 1 and r.get("ratio_p50"):
            out[os.path.realpath(str(r["model"]))] = float(r["ratio_p50"])
    return out


def _marks(row: dict[str, Any], prev: dict[str, Any]) -> list[str]:
    marks = []
    if row["speedup"] and prev["speedup"] and prev["speedup"] / row["speedup"] > SLOWER_BY:
        marks.append(f"slower than {prev['stage']}: {prev['speedup'] / row['speedup']:.2f}x its time")
    if row["accuracy"] is not None and prev["accuracy"] is not None and row["accuracy"] < prev["accuracy"]:
        n = row.get("samples")
        errors = round((prev["accuracy"] - row["accuracy"]) * n) if n else 0
        more = f", {errors} more error{'s' if errors != 1 else ''} in {n}" if n else ""
        marks.append(f"less accurate than {prev['stage']}: {100 * (row['accuracy'] - prev['accuracy']):+.1f} pt{more}")
    return marks


def _eval_data(spec: str):
    if not spec:
        return None
    from ..data import load_data

    return load_data(spec, what="data.eval")


def _outputs(path, data):
    """Every output of the ONNX model at `path` on the eval feeds (one ORT session)."""
    from ..fidelity import run_outputs
    from ..onnxgraph.io import input_specs, load_model

    feeds = data.validated(input_specs(load_model(path)), what="data.eval")
    return run_outputs(str(path), feeds, origin=os.path.basename(str(path)))


def _accuracy(outs, data) -> float | None:
    from ..fidelity import label_accuracy

    return label_accuracy(outs, data.labels) if data.labels is not None else None


def _fidelity(ref, got) -> tuple[str | None, float | None]:
    from ..errors import EdgecompressError
    from ..fidelity import judge

    try:
        head = judge(ref, got).headline()
    except EdgecompressError:
        return None, None
    for key in ("top1_agreement", "decision_agreement", "detection_recall", "cosine"):
        if key in head:
            return key, head[key]
    return None, None


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


_FID = {"top1_agreement": "top-1 agreement", "decision_agreement": "decision agreement",
        "detection_recall": "detection recall", "cosine": "output cosine"}


def render(rows: list[dict[str, Any]], stages: list[dict[str, Any]], total_s: float, title: str):
    """Rich renderables for stderr: the models (baseline first; a marked row in red, its reason in a footnote
    below the table) and the stages."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    base = next((r for r in rows if r.get("baseline")), None)
    table = Table(title=title, title_justify="left")
    for col in ("stage", "size", "smaller", "p50 ms", "faster", "agree", "accuracy", "!"):
        table.add_column(col, justify="left" if col in ("stage", "!") else "right", no_wrap=True)
    notes: list[str] = []
    for r in rows:
        smaller = "-"
        if base and r["size_bytes"] and base["size_bytes"]:
            smaller = f"{base['size_bytes'] / r['size_bytes']:.1f}x"
        mark = ""
        if r.get("marks"):
            notes.append(f"{len(notes) + 1}. {r['stage']}: " + "; ".join(r["marks"]))
            mark = str(len(notes))
        fid = "-" if r.get("fidelity") is None else f"{100 * r['fidelity']:.1f}%"
        table.add_row(r["stage"] + (" *" if r.get("baseline") else ""), _size(r["size_bytes"]), smaller,
                      "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3f}",
                      "-" if r.get("speedup") is None else f"{r['speedup']:.2f}x", fid,
                      "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
                      + ("" if r["accuracy_on"] == "eval" else " (val)"),
                      mark, style="red" if mark else None)
    lines = []
    if base:
        metric = next((r["fidelity_metric"] for r in rows if r.get("fidelity_metric")), None)
        lines.append(f"* baseline: {base['stage']} ({base['file']}). smaller/faster/agree are against it; "
                     f"faster = the median ratio of times in bench's interleaved run (1 thread); "
                     f"agree = {_FID.get(metric or '', 'agreement')} with it; accuracy on the eval split "
                     f"(a PyTorch model: its stage's val split).")
    onnx = [r for r in rows if r["format"] == "onnx" and not r.get("baseline") and r.get("speedup")]
    if len(onnx) > 1:
        lines.append(f"{onnx[-1]['stage']} vs {onnx[0]['stage']}: {onnx[-1]['speedup'] / onnx[0]['speedup']:.2f}x "
                     f"faster, {onnx[0]['size_bytes'] / onnx[-1]['size_bytes']:.1f}x smaller.")
    lines += notes
    times = Table(title=f"stages ({total_s:.1f}s in all)", title_justify="left")
    for col in ("#", "stage", "status", "time", "cpu"):
        times.add_column(col, justify="left" if col in ("stage", "status") else "right")
    for s in stages:
        times.add_row(str(s["index"]), s["stage"], s["status"], f"{s['seconds']:.1f}s",
                      f"{s.get('cpu_seconds', 0):.1f}s")
    return Group(table, *[Text(t, style="red" if t[0].isdigit() else "dim") for t in lines]), times
