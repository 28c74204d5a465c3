"""The quantize stage: pre-process, calibrate, pick the candidate (method, equalization, format, types, mode)
by fidelity and side-by-side speed, fall sensitive nodes back to fp32 until the accuracy budget holds, check
speed against fp32, and write the model atomically. ORT's temp files stay in a private temp dir (also the cwd).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import onnx

from ..artifact import ModelArtifact, StageResult
from ..data import load_data
from ..errors import BudgetError, ConfigError, TargetError
from ..fidelity import holdout, judge, resolve_state
from ..fsutil import check_output_path, private_tempdir, working_directory
from ..onnxgraph.census import count_macs
from ..onnxgraph.io import copy_model, external_tensors, input_specs, load_model, model_size_mb, save_model
from ..targets import get_target
from .config import QuantizeConfig
from .equalize import equalize, has_depthwise
from .lowbit import quantize_weight_only
from .preprocess import check_has_compute, check_not_quantized, prepare
from .report import Fp16Report, QuantizeReport, WeightOnlyReport
from .run import MATMUL_DOMINATED, _fidelity_dict, _Run
from .select import choose
from .smooth import smooth_streams
from .smooth_inputs import smooth_matmul_inputs

SLOWER = 0.97  # int8 below 0.97x fp32 counts as slower (within 3 %: measurement noise on a shared machine)


def _model_path(model: Any) -> tuple[Path, ModelArtifact]:
    if isinstance(model, ModelArtifact):
        return model.path, model
    p = Path(model)
    return p, ModelArtifact(path=p, format="onnx", stage="input")


@contextlib.contextmanager
def _quiet_ort_logging():
    """ORT's quantizer logs advice and warnings on the root logger; silence them for this call only."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


def _absolute(spec: Any) -> Any:
    """Data given as an existing relative path, made absolute (folders of .npz are read lazily, after chdir)."""
    if isinstance(spec, (str, os.PathLike)) and str(spec) and Path(spec).exists():
        return Path(spec).resolve()
    return spec


def _matmul_share(model: onnx.ModelProto) -> float:
    macs = count_macs(model)
    if not macs.total:
        return 0.0
    mm = sum(v for k, v in macs.by_op_type.items() if k.split(".")[-1] in ("MatMul", "Gemm", "FusedMatMul",
                                                                             "FusedGemm"))
    return mm / macs.total


def _check_excludes(cfg: QuantizeConfig, model: onnx.ModelProto) -> None:
    if not cfg.exclude:
        return
    names = [n.name for n in model.graph.node]
    known = set(names)
    missing = [e for e in cfg.exclude if e not in known]
    if missing:
        sample = ", ".join(n for n in names[:6] if n)
        raise ConfigError(f"exclude: node(s) {missing} not found in the graph (after pre-processing); "
                          f"nodes are named like: {sample}", hint="`edgecompress inspect MODEL.onnx` lists node names")


def quantize(model: Any, config: QuantizeConfig | None = None, *, out: str | os.PathLike[str], calibration: Any,
             eval_data: Any = None, target: Any = None, speed_data: Any = None) -> StageResult:
    """Quantize an ONNX model to int8, or its weights to int4 (see QuantizeConfig); returns the new artifact and a
    QuantizeReport (WeightOnlyReport for int4). `speed_data`: the feed speed is measured on (its first sample;
    default: the first evaluation sample), e.g. a one-token decode step of a language model."""
    cfg = config if config is not None else QuantizeConfig()
    tgt = get_target(target)
    src, art = _model_path(model)
    out = check_output_path(out).resolve()  # absolute: the work below runs with the cwd in a private temp dir
    calibration, eval_data = _absolute(calibration), _absolute(eval_data)
    m = load_model(src)
    if Path(out).resolve() == src.resolve():
        raise ConfigError("out must differ from the input model (inputs are never modified)")
    check_not_quantized(m, str(src))
    if cfg.precision == "fp16" and "fp16" not in tgt.isa:
        raise TargetError(f"precision fp16 is for targets that run float16 fast (ARMv8.2+ with fp16 in the "
                          f"profile's isa); target {tgt.name} lists {', '.join(tgt.isa) or 'no ISA features'}",
                          hint="pass --target for the device (e.g. rpi5-cortex-a76, android-arm64), or use int8")
    if cfg.weights != "int4":
        check_has_compute(m, str(src))
    specs = input_specs(m)
    calib = load_data(calibration, what="calibration data").validated(specs, what="calibration data")
    notes = list(calib.notes)
    if eval_data is not None:
        fid_data = load_data(eval_data, what="evaluation data").validated(specs, what="evaluation data")
        fid_note = f"evaluation data ({fid_data.n} samples)"
        notes += fid_data.notes
    else:
        calib, held = holdout(calib)
        if held is not None:
            fid_data, fid_note = held, f"{held.n} held-out calibration samples (no --eval given)"
        else:
            fid_data = calib
            fid_note = f"the {calib.n} calibration samples themselves (too few to hold some out; no --eval given)"
            notes.append("fidelity measured on the calibration samples: pass --eval for an independent check")
    speed_feed = None
    if speed_data is not None:
        speed_feed = next(iter(load_data(_absolute(speed_data), what="speed data").validated(specs,
                                                                                            what="speed data")))
    src = src.resolve()
    with private_tempdir("edgecompress-quantize-") as work, working_directory(work):
        # ORT's quantizer writes `<model>-inferred.onnx` beside the model path it is given: give it a private copy
        run = _Run(cfg, tgt, _private_copy(src, work / "input"), work, calib, fid_data, fid_note, notes=notes)
        run.speed_feed = speed_feed
        report: QuantizeReport | WeightOnlyReport | Fp16Report
        with contextlib.redirect_stdout(sys.stderr), _quiet_ort_logging():  # ORT prints progress on stdout
            if cfg.weights == "int4":
                report, final = quantize_weight_only(run, m, speed_feed)
            elif cfg.precision == "fp16":
                report, final = _fp16(run, m)
            else:
                report, final = _execute(run, m)
        if report.speed.get("measured") and report.speed["speedup"] < SLOWER and not cfg.allow_slower:
            raise BudgetError(f"{cfg.weights} model is slower than fp32 on this machine ({report.speed['speedup']:.2f}x, "
                              f"measured side by side); nothing written",
                              hint="pass --allow-slower to write it anyway", report=report.to_dict())
        copy_model(final, out)  # with its external data, if any (the pair lands together)
    metrics = {"fidelity": report.fidelity, "speedup": report.speed.get("speedup"), "size_mb": report.size_mb}
    return StageResult(art.derive(Path(out), "quantize", config=cfg, metrics=metrics), report)


def _private_copy(src: Path, folder: Path) -> Path:
    """Copy the model (and its external data files) into `folder`; the user's folder is never written to."""
    folder.mkdir()
    dest = folder / src.name
    shutil.copyfile(src, dest)
    proto = onnx.load(str(src), load_external_data=False)
    for loc in sorted({e.value for t in external_tensors(proto) for e in t.external_data if e.key == "location"}):
        (dest.parent / loc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src.parent / loc, dest.parent / loc)
    return dest


def _execute(run: _Run, model: onnx.ModelProto) -> tuple[QuantizeReport, Path]:
    cfg = run.cfg
    run.pre = prepare(model, run.src, run.work)
    pre_model = run.pre.model
    if pre_model is None:
        raise RuntimeError("pre-processing returned no model")
    _check_excludes(cfg, pre_model)
    run.models[(False, False)] = run.pre.path
    run.state = resolve_state(cfg.compare, run.src, run.threads)
    if run.state:
        run.notes.append("stateful model: evaluated in closed loop (" +
                         ", ".join(f"{a} <- {b}" for a, b in run.state) + ")")
    ref_all = run.outputs(run.src, run.fid_data, "fp32")
    run.ref_all = ref_all
    run.ref_sel = {k: v[: run.sel.n] for k, v in ref_all.items()}
    depthwise = has_depthwise(pre_model)
    if depthwise and cfg.mode != "dynamic":
        eq_model, eq = equalize(pre_model)
        eq_model, sm = smooth_streams(eq_model, run.calib.feeds(), threads=run.threads)
        run.eq_info = {"depthwise": True, "pairs": eq.pairs, "skipped": eq.skipped, "streams": sm.streams,
                       "stream_channels": sm.channels, "streams_skipped": sm.skipped, "applied": False}
        if eq.changed or sm.changed:
            p = run.work / "equalized.onnx"
            save_model(eq_model, p)
            run.models[(True, False)] = p
    else:
        run.eq_info = {"depthwise": depthwise, "pairs": 0, "skipped": {}, "applied": False,
                       "reason": "no depthwise convolutions" if not depthwise else "dynamic mode"}
    share = _matmul_share(model)
    if not depthwise and share >= MATMUL_DOMINATED:
        sm_model, si = smooth_matmul_inputs(pre_model, run.calib.feeds(), threads=run.threads)
        run.eq_info.update(pre_pass="smooth", smoothed_inputs=si.streams, smoothed_layers=si.layers,
                           smooth_skipped=si.skipped)
        if si.changed:
            p = run.work / "smoothed.onnx"
            save_model(sm_model, p)
            run.models[(True, False)] = p
            run.eq_info["reason"] = "MatMul inputs smoothed (tried as the +smooth candidate)"
    return choose(run, share)




def _fp16(run: _Run, model: onnx.ModelProto) -> tuple[Fp16Report, Path]:
    """fp16 weights and compute (quantize/fp16.py: risky ops kept fp32 by rule, measured range and measured error;
    parity judged under arm64 emulation when it is set up), then the held-out comparison on this machine."""
    from .fp16 import convert_fp16

    m16, res = convert_fp16(model, run.calib.feeds(), threshold=max(run.cfg.max_drop, 1e-6))
    final = run.work / "fp16.onnx"
    save_model(m16, final)
    run.state = resolve_state(run.cfg.compare, run.src, run.threads)
    ref = run.outputs(run.src, run.fid_data, "fp32")
    fid = judge(ref, run.outputs(final, run.fid_data, "fp16"), run.cfg.compare, labels=run.fid_data.labels,
                state=run.state)
    speed = {"measured": False, "threads": run.threads,
             "note": f"fp16 speed is the target's ({run.target.name}): this machine's CPU runs fp16 graphs through "
                     "fp32 kernels; time it with `edgecompress bench --remote` on the device"}
    return Fp16Report(target=run.target.name, conversion=res.to_dict(), fidelity=_fidelity_dict(fid),
                      fidelity_data=run.fid_note + " (this machine's CPU EP: weight rounding, fp32 arithmetic)",
                      speed=speed, size_mb={"fp32": round(model_size_mb(run.src), 3),
                                            "fp16": round(model_size_mb(final), 3)},
                      notes=run.notes + list(res.notes)), final
