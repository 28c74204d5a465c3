"""`bench()`: stage models and feeds, run the self-contained runner through a transport, assemble the report.

Per model and thread count, one runner process (local subprocess, SSH device or qemu) measures latency,
session creation, first run, peak RSS and EP coverage. With several models, one more runner process runs
them interleaved (A B A B ..., order flipped every round) for latency ratios with their spread; with --data,
each model's outputs are compared with the first model's (fidelity). `emulate="arm64"` adds a run under qemu
and reports output parity with the host run (emulated timings are labelled, never device speed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import FeedData, load_data, random_feeds
from ..errors import ConfigError, ValidationError
from ..fidelity import judge
from ..fsutil import private_tempdir, require_file
from ..onnxgraph.io import input_specs, load_model, model_files
from ..onnxgraph.runtime import compare_outputs
from ..targets import TargetProfile, get_target
from .config import BenchConfig
from .qemu import EMULATION_NOTE, require_root
from .report import BenchReport, ModelResult
from .stats import block_size, interleaved_ratios
from .transport import EmulatedTransport, LocalTransport, load_outputs, stage_runner

Log = Callable[[str], None]


def bench(models: Sequence[Any], config: BenchConfig, *, data: Any = None, target: Any = None,
          log: Log | None = None) -> BenchReport:
    """Benchmark `models` (paths or ModelArtifacts; the first is the baseline) under ONNX Runtime."""
    log = log or (lambda s: None)
    if not isinstance(config, BenchConfig):
        raise ConfigError(f"config must be a BenchConfig, got {type(config).__name__}")
    if not models:
        raise ConfigError("models: give at least one ONNX model")
    prof: TargetProfile = get_target(target)
    paths = [require_file(getattr(m, "path", m), "model") for m in models]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ConfigError("models: the same model is given twice")
    specs = [input_specs(load_model(p, load_external=False)) for p in paths]  # the signature only
    threads = config.threads or (prof.threads,)
    feed_data = load_data(data, what="bench data") if data is not None else None
    if config.emulate:
        require_root()  # fail before any timing when the arm64 root is missing
    warnings: list[str] = []
    remote = config.remote_spec
    if remote is not None and remote.kind == "adb":
        from .adb import bench_adb

        results, ratios, warns = bench_adb(paths, config, prof, threads, log)
        return BenchReport(tuple(results), tuple(ratios), prof.name, str(remote), tuple(warns), config.to_dict())
    with private_tempdir("edgecompress-bench-") as staging:
        stage_runner(staging)
        names = []
        for i, p in enumerate(paths):
            names.append(_stage_model(staging, i, p))
        feeds_files, labels = _stage_feeds(staging, specs, feed_data, config)
        want_outputs = feed_data is not None or config.emulate is not None
        transport = _transport(config)
        try:
            results, ratios = [], []
            for t in threads:
                base_job = {"threads": t, "providers": list(prof.execution_providers), "strict": config.strict,
                            "graph_optimization": prof.graph_optimization, "warmup": config.warmup,
                            "runs": config.runs, "duration_s": config.duration_s, "seed": config.seed}
                raw = []
                for i, p in enumerate(paths):
                    log(f"bench {p.name} ({t} thread{'s' if t != 1 else ''}) on {transport.where}")
                    out = f"out_{i}_t{t}.npz" if want_outputs else None
                    job = dict(base_job, mode="single", models=[names[i]], feeds=feeds_files[i], outputs=out,
                               coverage=config.coverage)
                    res = transport.run(staging, _write_job(staging, f"job_{i}_t{t}.json", job),
                                        fetch=(out,) if out else ())
                    raw.append(res)
                    warnings += _ep_warnings(p, prof, res)
                fid = _fidelity(staging, raw, labels, config) if feed_data is not None else [None] * len(paths)
                for i, p in enumerate(paths):
                    results.append(_model_result(p, t, raw[i], transport.where, fid[i]))
                if len(paths) > 1 and config.interleave:
                    log(f"interleaved A/B runs of {len(paths)} models ({t} thread{'s' if t != 1 else ''})")
                    block = block_size(config.runs)
                    job = dict(base_job, mode="interleaved", models=names, feeds_per_model=feeds_files, block=block)
                    res = transport.run(staging, _write_job(staging, f"job_ab_t{t}.json", job))
                    ratios += interleaved_ratios([str(p) for p in paths], res["round_latency_ms"], threads=t,
                                                 block=res["block"])
            if config.emulate:
                results = _emulate(staging, paths, names, feeds_files, prof, config, results, log, warnings)
        finally:
            transport.close()
    if any(r.emulated or r.emulation for r in results):
        warnings.append(EMULATION_NOTE)
    report = BenchReport(tuple(results), tuple(ratios), prof.name, transport.where, tuple(dict.fromkeys(warnings)),
                         config.to_dict())
    over = [r for r in results if r.fidelity and r.fidelity.get("within_budget") is False]
    if over:
        worst = max(over, key=lambda r: r.fidelity["drop"])  # type: ignore[index]
        raise ValidationError(f"{len(over)} model(s) outside the fidelity budget: {Path(worst.path).name} drop "
                              f"{worst.fidelity['drop']:.4f} > max_drop {config.max_drop} "  # type: ignore[index]
                              f"({worst.fidelity['summary']})", report=report.to_dict())  # type: ignore[index]
    return report


def _stage_model(staging: Path, i: int, path: Path) -> str:
    """Link model `i` into the staging folder; one with external data gets a folder of its own holding links to
    its data files too (ORT finds them beside the model path it is given)."""
    files = model_files(path)
    if len(files) == 1:
        name = f"m{i}.onnx"
        os.symlink(path.resolve(), staging / name)
        return name
    folder = staging / f"m{i}"
    for f in files:
        dest = folder / f.relative_to(path.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f.resolve(), dest)
    return f"m{i}/{path.name}"


def _transport(config: BenchConfig):
    remote = config.remote_spec
    if remote is None:
        return LocalTransport(config.timeout_s)
    from .ssh import SSHTransport

    return SSHTransport(remote, python=config.remote_python, known_hosts=config.known_hosts,
                        accept_new_host_key=config.accept_new_host_key, identity=config.identity,
                        connect_timeout_s=config.connect_timeout_s, timeout_s=config.timeout_s)


def _write_job(staging: Path, name: str, job: dict[str, Any]) -> str:
    (staging / name).write_text(json.dumps(job))
    return name


def _stage_feeds(staging: Path, specs: list, data: FeedData | None, config: BenchConfig):
    """One feeds file per distinct input signature (from --data, else seeded random feeds)."""
    files: list[str] = []
    by_sig: dict[str, str] = {}
    labels = None
    for i, sp in enumerate(specs):
        sig = json.dumps([s.to_dict() for s in sp], sort_keys=True)
        if sig not in by_sig:
            if data is not None:
                fd = data.validated(sp, what="bench data").head(min(config.fidelity_samples, data.n))
                labels = fd.labels if labels is None else labels
            else:
                fd = random_feeds(sp, 4, seed=config.seed)
            arrays = {f"{k}/{name}": np.asarray(v) for k, feed in enumerate(fd) for name, v in feed.items()}
            by_sig[sig] = f"feeds_{i}.npz"
            np.savez(staging / by_sig[sig], **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds vs allow_pickle
        files.append(by_sig[sig])
    return files, labels


def _fidelity(staging: Path, raw: list[dict], labels, config: BenchConfig) -> list[dict | None]:
    """Each model's outputs against model 0's, every output (edgecompress.fidelity); model 0 gets its accuracy."""
    outs = [load_outputs(staging / r["outputs_file"]) for r in raw]
    ref_names, ref = outs[0]
    ref_d = dict(zip(ref_names, ref, strict=True))
    res: list[dict | None] = []
    for i, (names, got) in enumerate(outs):
        rep = judge(ref_d, dict(zip(names, got, strict=True)), config.compare, labels=labels)
        if i == 0:
            d: dict[str, Any] = {"baseline": "self", "samples": rep.samples}
        else:
            d = {"baseline": "model 0", **rep.to_dict(), "summary": rep.summary()}
            if config.max_drop is not None:
                d["max_drop"] = config.max_drop
                d["within_budget"] = rep.meets(config.max_drop)
        acc = rep.headline().get("accuracy")
        if acc is not None:
            d["accuracy"] = acc
        res.append(d)
    return res


def _ep_warnings(path: Path, prof: TargetProfile, res: dict) -> list[str]:
    missing = res.get("missing_providers") or []
    if not missing:
        return []
    return [f"{path.name}: target {prof.name!r} asks for {', '.join(missing)}, which onnxruntime "
            f"{res.get('onnxruntime')} on {res.get('machine')} does not have: FELL BACK to "
            f"{', '.join(res.get('providers') or ['CPUExecutionProvider'])} (--strict makes this an error)"]


def _model_result(path: Path, threads: int, r: dict, where: str, fidelity: dict | None) -> ModelResult:
    return ModelResult(
        path=str(path), threads=threads, latency_ms=r["latency_ms"], throughput_per_s=r["throughput_per_s"],
        session_create_ms=r["session_create_ms"], first_run_ms=r["first_run_ms"], peak_rss_mb=r.get("peak_rss_mb"),
        size_mb=round(path.stat().st_size / 2**20, 4), providers=tuple(r.get("providers") or ()),
        ep_coverage=r.get("ep_coverage") or {"source": "session", "providers": r.get("providers")},
        runs=r["runs"], requested_providers=tuple(r.get("requested_providers") or ()),
        missing_providers=tuple(r.get("missing_providers") or ()), rss_before_load_mb=r.get("rss_before_load_mb"),
        where=where, machine=r.get("machine", ""), onnxruntime=r.get("onnxruntime", ""),
        fidelity=fidelity, accuracy=(fidelity or {}).get("accuracy"), latencies_ms=tuple(r.get("latencies_ms") or ()))


def _emulate(staging: Path, paths, names, feeds_files, prof: TargetProfile, config: BenchConfig,
             results: list[ModelResult], log: Log, warnings: list[str]) -> list[ModelResult]:
    emu = EmulatedTransport(config.timeout_s * 2)
    t = results[0].threads
    out: list[ModelResult] = []
    by_path = {}
    for i, p in enumerate(paths):
        log(f"emulated arm64 run of {p.name} under qemu (slow: 100-300x; for parity, not speed)")
        job = {"mode": "single", "models": [names[i]], "threads": t, "providers": ["CPUExecutionProvider"],
               "graph_optimization": prof.graph_optimization, "warmup": 0, "runs": config.emulate_runs,
               "feeds": feeds_files[i], "outputs": f"emu_out_{i}.npz", "coverage": False, "emulated": True}
        r = emu.run(staging, _write_job(staging, f"job_emu_{i}.json", job))
        host_names, host = load_outputs(staging / f"out_{i}_t{t}.npz")
        _, got = load_outputs(staging / f"emu_out_{i}.npz")
        cmp = compare_outputs(host, got, host_names, rel_tol=config.parity_tol)
        host_p50 = next(x.latency_ms["p50"] for x in results if x.path == str(p) and x.threads == t)
        by_path[str(p)] = {
            "latency_ms": r["latency_ms"], "runs": r["runs"], "machine": r.get("machine"),
            "onnxruntime": r.get("onnxruntime"), "python": r.get("python"), "emulated": True,
            "timing_note": EMULATION_NOTE, "slowdown_vs_host": r["latency_ms"]["p50"] / max(host_p50, 1e-9),
            "parity": cmp.to_dict(), "parity_ok": cmp.ok, "parity_summary": cmp.summary()}
        if not cmp.ok:
            warnings.append(f"{p.name}: emulated arm64 outputs differ from the host run beyond "
                            f"{config.parity_tol:g} of the output scale: {cmp.summary()}")
    from dataclasses import replace

    for res in results:
        out.append(replace(res, emulation=by_path.get(res.path)) if res.threads == t else res)
    return out
