"""`edgecompress package`: build a reproducible edge release folder + tarball (thin wiring over edgecompress.package)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import console, handle_errors, json_option, kv_table, show_result, target_option


@click.command("package", context_settings={"max_content_width": 110})
@click.argument("model", type=click.Path(dir_okay=False))
@target_option
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Release folder to create (appears only when complete); the tarball goes to DIR.tar.gz.")
@click.option("--baseline", default=None, type=click.Path(dir_okay=False), metavar="FP32.onnx",
              help="The float model the release is compared with (accuracy delta, agreement, size ratio).")
@click.option("--eval", "eval_data", default=None, metavar="DATA",
              help="Evaluation data (.npz with optional 'labels', folder, images, module:function).")
@click.option("--calibration", default=None, metavar="DATA",
              help="The calibration data used for quantization: its content hash goes into the manifest.")
@click.option("--name", default="model", show_default=True, help="Release name (tarball folder, manifest).")
@click.option("--version", "version", default="0.1.0", show_default=True, help="Release version.")
@click.option("--description", default="", help="One paragraph for the model card and the report.")
@click.option("--tolerance", type=float, default=None, metavar="X",
              help="Sample check tolerance relative to the output scale (default 1e-4 float, 2e-2 quantized).")
@click.option("--include-types", is_flag=True,
              help="Write per-operator types into required_operators.config (ORT reduced-type builds).")
@click.option("--bench-report", default=None, type=click.Path(dir_okay=False), metavar="JSON",
              help="Latency from `edgecompress bench --json` output instead of measuring here (reproducible).")
@click.option("--measure-latency/--no-measure-latency", default=None,
              help="Without --bench-report, time the model here when the target is host-compatible. Default: only "
                   "when the target has a p90 latency budget (measured numbers make the release not "
                   "byte-reproducible).")
@click.option("--latency-runs", type=int, default=50, show_default=True, help="Timed runs of that measurement.")
@click.option("--eval-samples", type=int, default=0, show_default=True, help="Use at most N eval samples (0 = all).")
@click.option("--tarball/--no-tarball", default=True, show_default=True, help="Also write DIR.tar.gz.")
@json_option
@handle_errors
def package_cmd(model, target, out, baseline, eval_data, calibration, name, version, description, tolerance,
                include_types, bench_report, measure_latency, latency_runs, eval_samples, tarball, as_json):
    """Build a release of MODEL.onnx for a target: model.onnx, model.ort, required_operators.config,
    manifest.json, report.html, MODEL_CARD.md, sample/, plus a byte-reproducible DIR.tar.gz.

    \b
    Exit 1 when a target budget (size, p90 latency, accuracy drop) is violated; nothing is written then.

    \b
    Example:
      edgecompress package int8.onnx --target x86_64-avx2 --out release --baseline fp32.onnx \\
          --eval calibration_data/mnist_eval.npz --name mnist --version 1.0.0
      edgecompress verify release.tar.gz
    """
    from ..package import PackageConfig, package

    cfg = PackageConfig(name=name, version=version, description=description, tolerance=tolerance,
                        include_types=include_types, measure_latency=measure_latency, latency_runs=latency_runs,
                        eval_samples=eval_samples, tarball=tarball)
    report = _load_bench(bench_report) if bench_report else None
    result = package(model, cfg, out=out, target=target, baseline=baseline, eval_data=eval_data,
                     calibration=calibration, bench_report=report)
    show_result(result, as_json, _print)


def _load_bench(path: str) -> dict:
    from ..errors import InputError

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--bench-report {p}: not a readable JSON file ({exc})") from None
    if isinstance(d, dict) and "models" not in d and isinstance(d.get("report"), dict):
        d = d["report"]
    if not isinstance(d, dict) or not isinstance(d.get("models"), list):
        raise InputError(f"--bench-report {p}: expected `edgecompress bench --json` output (a 'models' list)")
    return d


def _print(result) -> None:
    r = result.report
    m = r.metrics
    t = kv_table(f"release -> {r.release}")
    t.add_row("tarball", f"{r.tarball} (sha256 {r.tarball_sha256[:16]}...)" if r.tarball else "not written")
    t.add_row("size", f"model.onnx {m['size']['onnx_mb']:.3f} MB, model.ort {m['size']['ort_mb']:.3f} MB")
    lat = m["latency"]
    ms = lat.get("latency_ms") or {}
    t.add_row("latency", f"p50 {ms['p50']:.3f} ms, p90 {ms['p90']:.3f} ms ({lat['source']})" if "p90" in ms
              else lat.get("note", "not measured"))
    acc = m.get("accuracy") or {}
    if acc.get("model") is not None:
        extra = f" (baseline {100 * acc['baseline']:.2f}%)" if acc.get("baseline") is not None else ""
        t.add_row("accuracy", f"{100 * acc['model']:.2f}%{extra} on {acc['samples']} samples")
    for name, b in r.budgets.items():
        status = "n/a" if b["ok"] is None else ("ok" if b["ok"] else "VIOLATED")
        t.add_row(f"budget {name}", f"{b['value']} <= {b['limit']}: {status}")
    if r.mobile:
        t.add_row("ORT mobile", f"{r.mobile['execution_provider']}: {r.mobile['verdict']}")
    t.add_row("reproducible", "yes" if r.reproducible else "no (latency measured here)")
    console().print(t)
