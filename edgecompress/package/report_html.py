"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network) about the release."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from . import svgplot

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;
color:#0f172a;background:#f1f5f9}header{background:#0f172a;color:#f8fafc;padding:22px 32px}
header h1{margin:0 0 4px;font-size:24px}header p{margin:0;color:#cbd5e1}main{padding:20px 32px 40px;max-width:1240px}
h2{font-size:17px;margin:28px 0 10px;color:#0f172a;border-bottom:2px solid #e2e8f0;padding-bottom:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px}
.card{background:#fff;border-radius:10px;padding:12px 16px;box-shadow:0 1px 2px #0000001a}
.card .k{color:#64748b;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}.card .s{color:#475569;font-size:12px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:14px}
figure{margin:0;background:#fff;border-radius:10px;padding:12px;box-shadow:0 1px 2px #0000001a}
figcaption{font-weight:600;margin-bottom:6px}svg{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:10px;overflow:hidden;
box-shadow:0 1px 2px #0000001a;font-size:13px}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e2e8f0;
vertical-align:top}th{background:#f8fafc;color:#334155}code{font:12px ui-monospace,Menlo,Consolas,monospace}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}.na{color:#64748b}
.note{color:#475569;font-size:12px;margin:6px 0}footer{color:#64748b;font-size:12px;padding:0 32px 24px}
"""


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div>'
            f'<div class="s">{escape(sub)}</div></div>')


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _figure(caption: str, svg: str, note: str = "") -> str:
    n = f'<p class="note">{escape(note)}</p>' if note else ""
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}{n}</figure>"


def _status(ok: Any) -> str:
    if ok is None:
        return '<span class="na">not checked</span>'
    return '<span class="ok">pass</span>' if ok else '<span class="bad">FAIL</span>'


def render(m: dict[str, Any], *, points: list[dict[str, Any]], sensitivity: list[tuple[str, float]],
           latency_samples: list[float]) -> str:
    """The report for manifest `m` (without its file table's own entry) and the plot data."""
    metrics = m["metrics"]
    size = metrics["size"]
    lat = metrics.get("latency") or {}
    lat_ms = lat.get("latency_ms") or {}
    acc = metrics.get("accuracy") or {}
    target = m["target"]
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
             f"<title>{escape(m['name'])} {escape(m['version'])} — edgecompress release</title>"
             f"<style>{CSS}</style></head><body>"]
    parts.append(f"<header><h1>{escape(m['name'])} <span style=\"font-weight:400\">v{escape(m['version'])}</span></h1>"
                 f"<p>edgecompress release for target <b>{escape(target['name'])}</b> — "
                 f"{escape(target.get('description', ''))}</p></header><main>")
    if m.get("description"):
        parts.append(f"<p>{escape(m['description'])}</p>")

    # summary cards
    cards = [
        _card("model.onnx", f"{size['onnx_mb']:.3f} MB",
              f"model.ort {size['ort_mb']:.3f} MB" if size.get("ort_mb") is not None else "no model.ort (over 2 GB)"),
        _card("p90 latency", f"{lat_ms['p90']:.3f} ms" if "p90" in lat_ms else "—",
              f"p50 {lat_ms['p50']:.3f} ms · {lat.get('source', '')}" if "p50" in lat_ms else lat.get("note", "")),
        _card("accuracy (top-1)", _pct(acc.get("model")),
              f"baseline {_pct(acc.get('baseline'))} · Δ {100 * acc['delta']:+.2f} pts" if acc.get("delta") is not None
              else f"{acc.get('samples', 0)} eval samples" if acc else "no eval data"),
        _card("agreement with baseline", _pct(acc.get("top1_agreement")),
              f"max |Δ| {_fmt(acc.get('max_abs_error_vs_baseline'))}" if acc else ""),
        _card("quantization", m["model"]["quant_state"],
              f"{m['model']['params']:,} parameters"
              + (f"; weights {m['model']['weight_format']}" if m["model"].get("weight_format") else "")),
        _card("budgets", "all met" if all(b.get("ok") is not False for b in m["budgets"].values()) else "violated",
              f"{sum(1 for b in m['budgets'].values() if b.get('ok') is not None)} checked"),
    ]
    if m.get("mobile"):
        mob = m["mobile"]
        cards.append(_card("ORT mobile", mob["verdict"], mob["execution_provider"].replace("ExecutionProvider", "")))
    parts.append('<h2>Summary</h2><div class="cards">' + "".join(cards) + "</div>")

    # plots
    figs = []
    sz = [(p["size_mb"], p["accuracy"], p["label"], p["kind"] == "release") for p in points
          if p.get("size_mb") is not None and p.get("accuracy") is not None]
    front = "green line: the Pareto front (no variant is both smaller/faster and more accurate than a point on it)"
    figs.append(_figure("Size vs accuracy across the lineage (Pareto)", svgplot.scatter(
        sz, title="size vs accuracy", xlabel="model size (MB)", ylabel="top-1 accuracy", front=True),
        front if sz else "needs accuracy per variant (eval data with labels) and sizes"))
    lt = [(p["p90_ms"], p["accuracy"], p["label"], p["kind"] == "release") for p in points
          if p.get("p90_ms") is not None and p.get("accuracy") is not None]
    figs.append(_figure("p90 latency vs accuracy across the lineage (Pareto)", svgplot.scatter(
        lt, title="latency vs accuracy", xlabel="p90 latency (ms)", ylabel="top-1 accuracy", front=True),
        front if lt else "needs latency per variant (a bench report) and accuracy"))
    marks = {k: lat_ms[k] for k in ("p50", "p90", "p99") if k in lat_ms}
    if latency_samples:
        figs.append(_figure("Latency CDF (release model)", svgplot.cdf(
            latency_samples, title="latency CDF", xlabel="latency per run (ms)", marks=marks),
            f"{len(latency_samples)} runs, source: {lat.get('source', 'none')}"))
    elif lat_ms:
        figs.append(_figure("Latency CDF (release model)", svgplot.cdf_from_percentiles(
            lat_ms, title="latency CDF", xlabel="latency per run (ms)"),
            f"drawn through the percentiles of the {lat.get('source', '')} (no raw samples given): "
            + ", ".join(f"{k} {lat_ms[k]:.3f} ms" for k in ("p95", "p99", "max") if k in lat_ms)))
    else:
        figs.append(_figure("Latency CDF (release model)", svgplot.placeholder("latency CDF", "latency not measured"),
                            lat.get("note", "")))
    if sensitivity:
        figs.append(_figure("Per-layer quantization sensitivity (top 16)", svgplot.hbars(
            sensitivity, title="sensitivity", xlabel="sensitivity score (higher = more sensitive)")))
    ops = sorted(m["model"]["op_census"].items(), key=lambda kv: (-kv[1], kv[0]))
    figs.append(_figure("Operator census (model.onnx)", svgplot.hbars(
        [(k, float(v)) for k, v in ops], title="op census", xlabel="nodes")))
    parts.append('<h2>Plots</h2><div class="plots">' + "".join(figs) + "</div>")

    # variants table
    rows = [[p["label"], _fmt(p.get("size_mb")), _fmt(p.get("p90_ms")), _pct(p.get("accuracy"))] for p in points]
    parts.append("<h2>Variants</h2>" + _table(["variant", "size (MB)", "p90 (ms)", "top-1"], rows))

    # budgets
    brow = []
    for name, b in sorted(m["budgets"].items()):
        brow.append([escape(name), escape(_fmt(b.get("limit"))), escape(_fmt(b.get("value"))), _status(b.get("ok")),
                     escape(b.get("note", ""))])
    parts.append("<h2>Budgets</h2>" + (_table(["budget", "limit", "value", "status", "note"], brow, raw=True)
                                       if brow else '<p class="na">the target sets no budgets</p>'))

    if lat_ms:
        parts.append("<h2>Latency</h2>" + _table(list(lat_ms), [[_fmt(v) for v in lat_ms.values()]])
                     + f'<p class="note">source: {escape(lat.get("source", ""))}; where: {escape(str(lat.get("where", "")))}; '
                       f'threads: {escape(_fmt(lat.get("threads")))}. {escape(lat.get("note", ""))}</p>')

    if m.get("mobile"):
        mob = m["mobile"]
        mrows = [[c["check"], c["suitability"], f"{c['supported_nodes']}/{c['nodes']} ({c['supported_pct']}%)",
                  str(c["partitions"]), ", ".join(c["unsupported_ops"]) or "—"] for c in mob["checks"]]
        parts.append("<h2>ORT Mobile usability</h2>" + _table(
            ["check", "verdict", "supported nodes", "partitions", "ops falling back to CPU"], mrows)
            + f'<p class="note">{escape(mob["tool"])}; dynamic inputs: {escape(", ".join(mob["dynamic_inputs"]) or "none")}'
              f'{"; " + escape(mob["error"]) if mob.get("error") else ""}</p>')

    # model I/O
    io_rows = [[d, t["name"], str(t["shape"]), t["dtype"]] for d, key in (("input", "inputs"), ("output", "outputs"))
               for t in m["model"][key]]
    parts.append("<h2>Model signature</h2>" + _table(["", "name", "shape", "dtype"], io_rows)
                 + f'<p class="note">opsets: {escape(json.dumps(m["model"]["opset"], sort_keys=True))}; '
                   f'ORT format: {escape(m["ort"]["optimization_style"])} optimization style, '
                   f'target platform {escape(m["ort"]["target_platform"])}</p>')
    wrows = [[r["format"], str(r["tensors"]), f'{r["weights"]:,}', f'{r["bytes"]:,}', f'{r["overhead_bytes"]:,}',
              f'{r["bits_per_weight"]:g}'] for r in m["model"].get("weights") or []]
    if wrows:
        ort_notes = [*(m["ort"].get("rewrites") or []), *(m["ort"].get("notes") or [])]
        parts.append(f'<h2>Weights: {escape(m["model"].get("weight_format", ""))}</h2>'
                     + _table(["format", "tensors", "weights", "bytes", "scale bytes", "bits/weight"], wrows)
                     + "".join(f'<p class="note">{escape(n)}</p>' for n in ort_notes))

    # lineage
    lrows = []
    for i, rec in enumerate(m["lineage"]):
        cfg = ", ".join(f"{k}={_short(v)}" for k, v in sorted((rec.get("config") or {}).items()))
        met = ", ".join(f"{k}={_short(v)}" for k, v in sorted((rec.get("metrics") or {}).items()))
        lrows.append([str(i + 1), rec.get("stage", ""), rec.get("format", ""), cfg or "—", met or "—"])
    parts.append("<h2>Lineage</h2>" + (_table(["#", "stage", "format", "config", "metrics"], lrows) if lrows
                                       else '<p class="na">no lineage given (model packaged directly)</p>'))

    frows = [[f"<code>{escape(n)}</code>", f"{e['size']:,}", f"<code>{escape(e['sha256'][:16])}…</code>"]
             for n, e in sorted(m["files"].items())]
    parts.append("<h2>Files</h2>" + _table(["file", "bytes", "sha256"], frows, raw=True)
                 + '<p class="note">This page and MODEL_CARD.md are written after this table; manifest.json lists the '
                   'sha256 of every file, this page included (not itself: it carries an integrity digest).</p>')
    tc = m["toolchain"]
    parts.append("<h2>Toolchain</h2>" + _table(list(tc), [list(tc.values())]))
    parts.append("</main><footer>Generated by edgecompress. Check this release with "
                 "<code>edgecompress verify</code>.</footer></body></html>\n")
    return "".join(parts)


def _short(v: Any, limit: int = 60) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= limit else s[: limit - 1] + "…"
