"""MODEL_CARD.md: a short human-readable card built from the manifest."""

from __future__ import annotations

from typing import Any


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _pts(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:+.2f} points"


def render(m: dict[str, Any]) -> str:
    md = m["model"]
    metrics = m["metrics"]
    acc = metrics.get("accuracy") or {}
    lat = metrics.get("latency") or {}
    lat_ms = lat.get("latency_ms") or {}
    size = metrics["size"]
    t = m["target"]
    lines = [
        f"# {m['name']} v{m['version']}",
        "",
        m.get("description") or "An edge model release built by edgecompress.",
        "",
        "## Deployment target",
        "",
        f"- Target: `{t['name']}` ({t.get('arch', '')}) — {t.get('description', '')}",
        f"- Execution providers: {', '.join(t.get('execution_providers', []))}",
        (f"- ORT format: `model.ort` ({m['ort']['optimization_style']} optimization style); "
         if not m["ort"].get("skipped") else f"- ORT format: none ({m['ort']['skipped']}); ")
        + "reduced-build operators in `required_operators.config`",
        "",
        "## Inputs and outputs",
        "",
        "| | name | shape | dtype |",
        "|---|---|---|---|",
    ]
    for kind, key in (("input", "inputs"), ("output", "outputs")):
        for s in md[key]:
            lines.append(f"| {kind} | `{s['name']}` | {s['shape']} | {s['dtype']} |")
    lines += [
        "",
        "## Metrics",
        "",
        f"- Size: model.onnx {size['onnx_mb']:.3f} MB, "
        + (f"model.ort {size['ort_mb']:.3f} MB; " if size.get("ort_mb") is not None else
           f"no model.ort ({(m.get('ort') or {}).get('skipped', 'not made')}); ")
        + f"{md['params']:,} parameters; quantization: {md['quant_state']}"
        + (f"; weights: {md['weight_format']}" if md.get("weight_format") else ""),
    ]
    if acc:
        lines.append(f"- Top-1 accuracy: {_pct(acc.get('model'))} on {acc.get('samples')} evaluation samples "
                     f"(baseline {_pct(acc.get('baseline'))}, delta {_pts(acc.get('delta'))}, "
                     f"top-1 agreement with the baseline {_pct(acc.get('top1_agreement'))})")
    else:
        lines.append("- Accuracy: not evaluated (no evaluation data given)")
    if lat_ms:
        lines.append(f"- Latency ({lat.get('source')}, threads: {lat.get('threads')}): p50 {lat_ms.get('p50')} ms, "
                     f"p90 {lat_ms.get('p90')} ms, p99 {lat_ms.get('p99')} ms")
    else:
        lines.append(f"- Latency: {lat.get('note') or 'not measured'}")
    if m.get("mobile"):
        mob = m["mobile"]
        lines.append(f"- ORT Mobile usability ({mob['execution_provider']}): {mob['verdict']}")
    lines += ["", "## Provenance", ""]
    if m["lineage"]:
        for i, rec in enumerate(m["lineage"]):
            lines.append(f"{i + 1}. `{rec.get('stage')}` ({rec.get('format')})")
    else:
        lines.append("Packaged directly from an ONNX model (no lineage given).")
    cal = m.get("calibration")
    if cal:
        lines.append(f"\nCalibration data: {cal['samples']} samples, sha256 `{cal['sha256']}`.")
    lines += [
        "",
        "## Limitations",
        "",
        "- Accuracy numbers hold for the evaluation data above; check on data from the deployment domain.",
        "- Quantized models can differ from the float baseline on individual inputs (see the agreement above).",
        "- Latency measured on a host says little about another device; see `report.html` for where it was measured.",
        "",
        "## Use",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        'sess = ort.InferenceSession("model.ort")  # or model.onnx',
        'feed = dict(np.load("sample/input.npz"))',
        "outputs = sess.run(None, feed)",
        "```",
        "",
        "Check the release: `edgecompress verify <this folder or its .tar.gz>`.",
        "",
    ]
    return "\n".join(lines)
