"""`package()`: build the release folder (and its tarball) atomically, or nothing at all.

Order: inputs are checked first; the release is built in a temp folder beside `out` (model.onnx, model.ort,
required_operators.config, sample/, metrics, budgets, report.html, MODEL_CARD.md, manifest.json last); a
budget violation or a failed ORT check raises before anything appears under `out` or `<out>.tar.gz`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import ModelArtifact, StageResult, config_to_dict
from ..data import FeedData, load_data, random_feeds
from ..errors import ConfigError, EdgecompressError, UnsupportedError, ValidationError
from ..fsutil import (
    atomic_dir,
    atomic_path,
    check_output_dir,
    check_output_path,
    require_file,
    sha256_file,
)
from ..onnxgraph.io import (
    data_file_name,
    has_external,
    input_specs,
    is_large,
    load_model,
    model_files,
    output_specs,
    save_model,
    tensor_bytes,
)
from ..onnxgraph.runtime import compare_outputs, make_session, run_all
from ..targets import TargetProfile, get_target, is_host_compatible
from . import budgets as budget_mod
from . import manifest as mf
from . import metrics as met
from . import modelcard, report_html
from .config import FLOAT_TOLERANCE, QUANT_TOLERANCE, PackageConfig, PackageReport
from .mobile import mobile_verdict
from .ortformat import convert_to_ort, no_ort_conversion, ort_session, parse_required_operators
from .sample import write_sample
from .tarball import release_files, write_tarball

PARITY_SAMPLES = 8


def tarball_path(out: Path) -> Path:
    return out.parent / f"{out.name}.tar.gz"


def package(model: Any, config: PackageConfig, *, out: str | Path, target: Any = None, baseline: Any = None,
            eval_data: Any = None, calibration: Any = None, lineage: list[dict[str, Any]] | None = None,
            bench_report: Any = None) -> StageResult:
    """Build a verified edge release of `model` (an .onnx path or ModelArtifact) in folder `out`."""
    if not isinstance(config, PackageConfig):
        raise ConfigError(f"config must be a PackageConfig, got {type(config).__name__}")
    prof: TargetProfile = get_target(target)
    src = Path(getattr(model, "path", model))
    if isinstance(model, ModelArtifact) and model.format != "onnx":
        raise UnsupportedError(f"package takes an ONNX model, got a {model.format!r} artifact ({src})",
                               hint="export the model to ONNX first (edgecompress export)")
    require_file(src, "model")
    proto = load_model(src)
    specs = input_specs(proto)
    out = Path(out)
    check_output_dir(out, what="release folder")
    tar_path = tarball_path(out)
    if config.tarball and tar_path.parent.is_dir():
        check_output_path(tar_path, what="release tarball")
    base_path = None
    if baseline is not None:
        base_path = require_file(Path(getattr(baseline, "path", baseline)), "baseline model")
        load_model(base_path)
    ev = _feeds(eval_data, specs, "evaluation data")
    if ev is not None and config.eval_samples:
        ev = ev.head(config.eval_samples)
    cal = load_data(calibration, what="calibration data") if calibration is not None else None
    if lineage is None and isinstance(model, ModelArtifact):
        lineage = model.lineage()
    lineage_clean = [mf.portable(config_to_dict(r)) for r in (lineage or [])]
    notes: list[str] = []
    sample_feed = _sample_feed(ev, cal, specs, notes)
    tol = config.tolerance if config.tolerance is not None else (
        QUANT_TOLERANCE if _is_quantized(proto) else FLOAT_TOLERANCE)
    out_names = [o.name for o in output_specs(proto)]

    with atomic_dir(out) as tmp:
        model_file = tmp / "model.onnx"
        large = is_large(proto)
        if large:  # over 2 GB: model.onnx + model.onnx.data (one external data file, hashed in the manifest)
            save_model(proto, model_file, external=True)
            notes.append(f"model over 2 GB: its tensors are in {data_file_name(model_file)} beside model.onnx")
        elif has_external(load_model(src, load_external=False, check=False)):  # tensors as stored, not loaded
            model_file.write_bytes(proto.SerializeToString())
            notes.append("external data was inlined into model.onnx")
        else:
            shutil.copyfile(src, model_file)
        if large:
            conv = no_ort_conversion(proto, f"the model's {tensor_bytes(proto) / 1e9:.2f} GB of tensors exceed the "
                                            "ORT format's 2 GB flatbuffer limit")
        else:
            conv = convert_to_ort(model_file, prof, include_types=config.include_types)
            (tmp / "model.ort").write_bytes(conv.ort_bytes)
        notes.extend(conv.info.get("notes", []))
        (tmp / "required_operators.config").write_text(conv.config_text, encoding="utf-8")

        onnx_sess = make_session(model_file, origin="model.onnx")
        parity_data = FeedData.from_feeds([sample_feed] + (ev.head(PARITY_SAMPLES).feeds() if ev is not None else []))
        onnx_out = run_all(onnx_sess, parity_data)
        expected = [o[0] for o in onnx_out]  # the sample feed is parity sample 0
        if large:
            cmp = compare_outputs(onnx_out, onnx_out, out_names, rel_tol=tol)  # no .ort to compare with
        else:
            cmp = compare_outputs(onnx_out, run_all(ort_session(tmp / "model.ort"), parity_data), out_names,
                                  rel_tol=tol)
        if not cmp.ok:
            raise ValidationError(f"model.ort does not match model.onnx within tolerance {tol}: {cmp.summary()}",
                                  report=cmp.to_dict())
        write_sample(tmp, sample_feed, dict(zip(out_names, expected, strict=True)), tol)

        mobile = None if large else mobile_verdict(model_file, prof)
        if large and prof.mobile_ep is not None:
            notes.append("ORT Mobile usability not checked: mobile runtimes load the ORT format, which cannot hold "
                         "a model over 2 GB")
        if mobile and mobile.get("error"):
            notes.append(f"ORT Mobile usability: {mobile['error']}")
        onnx_total = sum(f.stat().st_size for f in model_files(model_file))  # with its external data
        size: dict[str, Any] = {"onnx_bytes": model_file.stat().st_size, "ort_bytes": len(conv.ort_bytes),
                                "onnx_mb": round(onnx_total / 1e6, 6), "ort_mb": round(len(conv.ort_bytes) / 1e6, 6)}
        if large:
            size.update(onnx_data_bytes=onnx_total - size["onnx_bytes"], ort_bytes=None, ort_mb=None)
        if base_path is not None:
            base_bytes = sum(f.stat().st_size for f in model_files(base_path))  # with its external data
            size["baseline_mb"] = round(base_bytes / 1e6, 6)
            size["ratio_vs_baseline"] = round(base_bytes / max(onnx_total, 1), 4)
        accuracy = met.accuracy_metrics(model_file, ev, base_path, session=onnx_sess)
        latency, samples = _latency(config, prof, bench_report, src, model_file, sample_feed, notes)
        metrics = {"size": size, "latency": latency, "accuracy": accuracy,
                   "ort_parity": {"samples": cmp.samples, "max_abs": max((o.max_abs for o in cmp.outputs), default=0.0),
                                  "rel_tol": tol}}
        budget_results = budget_mod.evaluate(prof, metrics)
        budget_mod.enforce(budget_results, prof)

        manifest = {
            "schema_version": mf.SCHEMA_VERSION, "kind": mf.KIND, "name": config.name, "version": config.version,
            "description": config.description, "files": {},
            "model": {**mf.model_section(proto), "external_data": [f.name for f in model_files(model_file)[1:]]},
            "ort": {**conv.info, "required_operators": parse_required_operators(conv.config_text)},
            "target": mf.portable(prof.to_dict()), "toolchain": mf.toolchain(), "lineage": lineage_clean,
            "calibration": ({"sha256": cal.content_hash(), "samples": cal.n} if cal is not None else None),
            "evaluation": ({"sha256": ev.content_hash(), "samples": ev.n, "labels": ev.labels is not None}
                           if ev is not None else None),
            "metrics": metrics, "budgets": budget_results, "mobile": mobile,
            "sample": {"input": "sample/input.npz", "expected_output": "sample/expected_output.npz",
                       "tolerance": "sample/tolerance.json", "rel_tol": tol},
            "reproducible": latency.get("source") != "measured",
            "package_config": config.to_dict(),
        }
        manifest["files"] = _file_table(tmp)
        points = _points(lineage_clean, list(lineage or []), bench_report, ev, base_path, size, latency, accuracy, notes)
        sens = met.find_sensitivity(lineage_clean)
        (tmp / "report.html").write_text(report_html.render(manifest, points=points, sensitivity=sens,
                                                            latency_samples=samples), encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(modelcard.render(manifest), encoding="utf-8")
        manifest["files"] = _file_table(tmp, known=manifest["files"])  # hash only the two files written since
        sealed = mf.seal(manifest)
        (tmp / mf.MANIFEST).write_text(mf.dumps(sealed), encoding="utf-8")
    # the folder is complete and in place; the tarball follows (an interrupt in between leaves a whole folder)
    tar_sha = None
    if config.tarball:
        with atomic_path(tar_path) as tmp_tar:
            tar_sha = write_tarball(out, f"{config.name}-{config.version}", tmp_tar)

    report = PackageReport(release=str(out), tarball=str(tar_path) if config.tarball else None,
                           tarball_sha256=tar_sha, files=sealed["files"], metrics=metrics, budgets=budget_results,
                           mobile=mobile, reproducible=sealed["reproducible"], notes=tuple(notes))
    parent = model if isinstance(model, ModelArtifact) else ModelArtifact(path=src)
    art = parent.derive(out / "model.onnx", "package", config=config,
                        metrics={"size_mb": size["onnx_mb"], "release": str(out)})
    return StageResult(art, report)


def _feeds(spec: Any, specs: list, what: str) -> FeedData | None:
    if spec is None:
        return None
    return load_data(spec, what=what).validated(specs, what=what)


def _sample_feed(ev: FeedData | None, cal: FeedData | None, specs: list, notes: list[str]) -> dict[str, np.ndarray]:
    if ev is not None:
        return next(iter(ev))
    if cal is not None:
        try:
            return next(iter(cal.validated(specs, what="calibration data")))
        except EdgecompressError:
            pass
    notes.append("sample input is random (seed 0): no evaluation or calibration data given")
    return next(iter(random_feeds(specs, 1, seed=0)))


def _is_quantized(proto: Any) -> bool:
    """Quantized (int8, weight-only low-bit) or reduced-precision float (fp16/bf16 weights): such outputs differ
    between CPUs by more than the float tolerance (an fp16 MLP differs by 3.6e-4 of its output scale between x86
    and arm64, an int4 MatMulNBits one by 1.1e-2), so the release's sample check uses the quantized tolerance."""
    from onnx import TensorProto

    from ..onnxgraph.census import quant_state

    low = (TensorProto.FLOAT16, TensorProto.BFLOAT16)
    return quant_state(proto) != "none" or any(t.data_type in low for t in proto.graph.initializer)


def _file_table(root: Path, known: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """sha256 and size of every release file but the manifest, sorted; entries in `known` (files unchanged since
    that table was made) are reused rather than read again."""
    known = known or {}
    return {rel: dict(known[rel]) if rel in known else {"sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
            for rel in release_files(root) if rel != mf.MANIFEST}


def _latency(config: PackageConfig, prof: TargetProfile, bench_report: Any, src: Path, model_file: Path,
             feed: dict[str, np.ndarray], notes: list[str]) -> tuple[dict[str, Any], list[float]]:
    if bench_report is not None:
        lat = met.latency_from_bench(bench_report, src)
        if lat is None:
            notes.append(f"the bench report has no entry for {src.name}; latency not recorded")
            return {"source": "none", "latency_ms": {}, "note": "bench report has no entry for this model"}, []
        samples = lat.pop("samples_ms")
        return lat, samples
    wanted = config.measure_latency
    if wanted is None:  # auto: measure only to check a latency budget
        wanted = prof.budgets.max_p90_latency_ms is not None
    if not wanted:
        return {"source": "none", "latency_ms": {},
                "note": "not measured (no bench report given; --measure-latency times it here)"}, []
    if not is_host_compatible(prof):
        return {"source": "none", "latency_ms": {},
                "note": f"not measured: this host is not compatible with target {prof.name}; bench on the device"}, []
    lat = _measure(model_file, feed, prof, config.latency_runs)
    samples = lat.pop("samples_ms")
    lat["note"] = "measured at packaging time: not reproducible (pass a bench report for a byte-identical release)"
    return lat, samples


def _measure(model_file: Path, feed: dict[str, np.ndarray], prof: TargetProfile, runs: int) -> dict[str, Any]:
    from ..bench import BenchConfig, bench

    rep = bench([model_file], BenchConfig(runs=runs, warmup=5, coverage=False),
                data=FeedData.from_feeds([feed], source="sample"), target=prof)
    lat = met.latency_from_bench(rep, model_file)  # never None: the report holds this one model's entry
    if lat is None:
        raise RuntimeError(f"the bench report has no entry for {model_file}")
    lat.update(source="measured", tool="edgecompress.bench")
    return lat


def _points(lineage: list[dict[str, Any]], raw_lineage: list[Any], bench_report: Any, ev: FeedData | None, base_path: Path | None,
            size: dict[str, Any], latency: dict[str, Any], accuracy: dict[str, Any] | None,
            notes: list[str]) -> list[dict[str, Any]]:
    acc = accuracy or {}
    release = {"label": "release", "size_mb": size["onnx_mb"], "p90_ms": (latency.get("latency_ms") or {}).get("p90"),
               "accuracy": acc.get("model"), "kind": "release"}
    base = None
    if base_path is not None:
        p90 = None
        if bench_report is not None:
            entry, _ = met.bench_entry(bench_report, base_path)
            if entry is not None and met.named_in(bench_report, str(base_path)):
                p90 = (entry.get("latency_ms") or {}).get("p90")
        base = {"label": "baseline", "size_mb": size.get("baseline_mb"), "p90_ms": p90, "accuracy": acc.get("baseline"),
                "kind": "baseline"}
    points = met.variant_points(lineage, bench_report, release, base)
    # fill a lineage variant's accuracy from its file when it is still on disk and eval data has labels
    for rec, pt in zip(raw_lineage, [p for p in points if p["kind"] == "lineage"], strict=False):
        path = Path(str(config_to_dict(rec).get("path", "")))
        if pt["accuracy"] is None and ev is not None and ev.labels is not None and path.suffix == ".onnx" and path.is_file():
            try:
                a = met.accuracy_metrics(path, ev, None)
                pt["accuracy"] = a.get("model") if a else None
                if pt["size_mb"] is None:
                    pt["size_mb"] = round(path.stat().st_size / 1e6, 6)
            except EdgecompressError as exc:
                notes.append(f"variant {path.name}: not evaluated ({exc.message})")
    return points
