"""Choosing the candidate: calibration method and equalization by fidelity; format, activation type and mode by
side-by-side speed on the host among the candidates that meet the accuracy budget.
"""

from __future__ import annotations

from typing import Any

from ..errors import EdgecompressError
from ..fidelity import better
from ..onnxgraph.io import load_model, save_model
from ..onnxgraph.timing import time_side_by_side
from ..targets import is_host_compatible
from . import rounding
from .ortquant import Candidate, run_quantizer
from .progress import bar
from .run import EQUAL_SPEED, MATMUL_DOMINATED, Tried, _Run, fallback, finish


def _best(ts: list[Tried]) -> Tried:
    best = ts[0]
    for t in ts[1:]:
        if better(t.fidelity, best.fidelity):
            best = t
    return best


def _modes(run: _Run, share: float, why: dict[str, str]) -> list[str]:
    cfg = run.cfg
    if cfg.mode != "auto":
        why["mode"] = f"--mode {cfg.mode}"
        return [cfg.mode]
    if share >= MATMUL_DOMINATED:
        why["mode"] = (f"MatMul/Gemm hold {share:.0%} of the MACs: static and dynamic were both tried; "
                       "the fastest within the accuracy budget won (fidelity decides at equal speed)")
        return ["static", "dynamic"]
    why["mode"] = f"static: MatMul/Gemm hold only {share:.0%} of the MACs"
    return ["static"]


def _static_pool(run: _Run, why: dict[str, str]) -> list[Tried]:
    cfg, prefs = run.cfg, run.target.quantization
    per_channel = cfg.per_channel if cfg.per_channel is not None else prefs.per_channel
    fmt0 = prefs.format if cfg.format == "auto" else cfg.format
    act0 = prefs.activation_type if cfg.activation_type == "auto" else cfg.activation_type
    methods = ["minmax", "histogram"] if cfg.method == "auto" else [cfg.method]
    eqs = [False, True] if (True, False) in run.models else [False]
    base = Candidate("static", fmt0, act0, prefs.weight_type, per_channel, prefs.reduce_range, methods[0],
                     equalized=False, exclude=cfg.exclude, pre_pass=_pre_pass(run))
    stage_a = []
    for eq in eqs:
        for m in methods:
            t = run.build(base.with_(method=m, equalized=eq))
            run.evaluate(t)
            stage_a.append(t)
    best = _best(stage_a)
    if len(methods) > 1:
        drops = ", ".join(f"{t.cand.method}{'+' + t.cand.pre_pass if t.cand.equalized else ''}: {t.fidelity.drop:.4g}" for t in stage_a)
        why["method"] = f"best fidelity on {run.sel.n} samples (drop: {drops})"
    else:
        why["method"] = f"--method {cfg.method}"
    if len(eqs) > 1:
        run.eq_info["reason"] = ("applied: it improved fidelity" if best.cand.equalized
                                 else "not applied: it did not improve fidelity")
    best = _try_rounding(run, best)
    pool = [best]
    if is_host_compatible(run.target) and (cfg.format == "auto" or cfg.activation_type == "auto"):
        fmts = ["qdq", "qoperator"] if cfg.format == "auto" else [cfg.format]
        acts = ["uint8", "int8"] if cfg.activation_type == "auto" else [cfg.activation_type]
        for f in fmts:
            for a in acts:
                if (f, a) == (fmt0, act0) or (f == "qoperator" and a == "int8"):
                    continue
                t = run.build(best.cand.with_(format=f, activation_type=a))
                run.evaluate(t)
                pool.append(t)
    else:
        why["format"] = (f"target {run.target.name} prefers {fmt0} with {act0} activations" if cfg.format == "auto"
                         else f"--format {cfg.format}")
    return pool


def _try_rounding(run: _Run, best: Tried) -> Tried:
    """Re-round and clip every layer's weights by its output error on its real quantized input (rounding.py);
    keep the result if it improves fidelity on the selection data (held out from calibration). An
    improvement, never a requirement: if it cannot run on this graph, the plain candidate goes on."""
    try:
        return _rounded(run, best)
    except EdgecompressError as exc:
        run.rounding = {"reason": f"not applied: {exc.message}"}
        return best


def _rounded(run: _Run, best: Tried) -> Tried:
    cand = best.cand
    if cand.weight_type != "int8":
        run.rounding = {"reason": "not tried: weights are not symmetric int8"}
        return best
    rep = rounding.RoundingReport()
    fp32 = load_model(run.model_for(cand), check=False)
    qdq = best.path
    if cand.format != "qdq":  # the layer inputs are read from the QDQ form of the same candidate
        qdq = run_quantizer(run.model_for(cand), run.work / "rounding_probe.onnx", cand.with_(format="qdq"),
                            run.cache_for(cand.method, cand.equalized))
    q = load_model(qdq, check=False)  # ORT's raw output: subgraph order is repaired only on the final model
    layers = rounding.find_layers(fp32, q, rep)
    if not layers:
        run.rounding = {**rep.to_dict(), "reason": "not tried: no weighted layer with a quantized twin"}
        return best
    data = run.calib.head(rounding.SAMPLES)
    with bar("measuring layer inputs for rounding", data.n) as adv:
        rounding.collect(q, layers, data, threads=run.threads, tick=adv)
    qmax = 64 if cand.reduce_range else 127
    new = rounding.optimize(fp32, layers, qmax=qmax, per_channel=cand.per_channel, report=rep)
    run.rounding = rep.to_dict()
    if not rep.improved:
        run.rounding["reason"] = "not applied: no layer's held-out error fell"
        return best
    p = run.work / f"rounded_{int(cand.equalized)}.onnx"
    save_model(new, p)  # external data when over 2 GB
    run.models[(cand.equalized, True)] = p
    t = run.build(cand.with_(rounded=True))
    run.evaluate(t)
    gain = f"drop {best.fidelity.drop:.4g} -> {t.fidelity.drop:.4g}, sqnr {_sqnr(best)} -> {_sqnr(t)} dB"
    if better(t.fidelity, best.fidelity):
        run.rounding["reason"] = f"applied to {rep.improved} layer(s): {gain}"
        return t
    run.rounding["reason"] = f"not applied: no fidelity gain ({gain})"
    return best


def _sqnr(t: Tried) -> str:
    v = t.fidelity.headline().get("sqnr_db") if t.fid is not None else None
    return f"{v:.1f}" if v is not None else "-"


def _dynamic_pool(run: _Run) -> list[Tried]:
    cfg, prefs = run.cfg, run.target.quantization
    pcs = [cfg.per_channel] if cfg.per_channel is not None else [True, False]
    pool = []
    for eq in [False, True] if (True, False) in run.models else [False]:
        for pc in pcs:
            t = run.build(Candidate("dynamic", "qoperator", "uint8", "int8", pc, prefs.reduce_range, "runtime",
                                    equalized=eq, exclude=cfg.exclude, pre_pass=_pre_pass(run)))
            run.evaluate(t)
            pool.append(t)
    return pool


def _pre_pass(run: _Run) -> str:
    return str(run.eq_info.get("pre_pass", "CLE"))


def _pick(run: _Run, pool: list[Tried], why: dict[str, str]) -> Tried:
    eligible = [t for t in pool if t.fidelity.meets(run.cfg.max_drop)]
    if not eligible:
        eligible = [_best(pool)]
    if len(pool) == 1:
        return pool[0]
    if is_host_compatible(run.target):
        feed = next(iter(run.sel))
        models: dict[str, Any] = {"fp32": run.src}
        models.update({f"c{i}": t.path for i, t in enumerate(pool)})
        tm = time_side_by_side(models, feed, threads=run.threads)
        for i, t in enumerate(pool):
            t.speedup = tm.ratio("fp32", f"c{i}")
        fastest = max(t.speedup or 0.0 for t in eligible)
        near = [t for t in eligible if (t.speedup or 0.0) >= fastest * (1 - EQUAL_SPEED)]
        choice = _best(near)
        table = "; ".join(f"{t.cand.label}: {t.speedup:.2f}x, drop {t.fidelity.drop:.4g}" for t in pool)
        why["format"] = (f"fastest within max_drop {run.cfg.max_drop} measured side by side on this machine "
                         f"({tm.rounds} rounds, {run.threads} thread(s)): {table}")
        return choice
    choice = _best(eligible)
    why.setdefault("format", "best fidelity (target is not this machine: no timing)")
    return choice


def choose(run: _Run, share: float):
    why: dict[str, str] = {}
    modes = _modes(run, share, why)
    pool: list[Tried] = []
    if "static" in modes:
        pool += _static_pool(run, why)
    if "dynamic" in modes:
        pool += _dynamic_pool(run)
        why.setdefault("method", "dynamic: activation ranges computed at run time" if modes == ["dynamic"] else
                       why.get("method", ""))
    best = _pick(run, pool, why)
    if best.cand.mode == "dynamic" and len(modes) > 1:
        why["mode"] = "dynamic: " + why["mode"]
        why["method"] = "runtime (dynamic quantization)"
    elif len(modes) > 1:
        why["mode"] = "static: " + why["mode"]
    final, excluded, base, msg = fallback(run, best)
    if msg:
        why["fallback"] = msg
    return finish(run, final, why, excluded, base)
