"""The state of one quantize run (candidates tried, calibration caches, reference outputs) and its last steps:
fp32 fallback of sensitive nodes and the final measurements that make the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import onnx

from ..data import FeedData
from ..errors import ValidationError
from ..fidelity import CompareConfig, FidelityReport, Outputs, judge, run_outputs
from ..onnxgraph.census import int8_census
from ..onnxgraph.io import model_size_mb
from ..onnxgraph.runtime import make_session
from ..onnxgraph.timing import time_side_by_side
from ..targets import TargetProfile, is_host_compatible
from . import calibration as calib_mod
from .config import QuantizeConfig
from .ortquant import Candidate, run_quantizer
from .preprocess import COMPUTE, PreprocessResult
from .progress import bar
from .report import QuantizeReport
from .sensitivity import rank_nodes

SELECT_SAMPLES = 128  # evaluation samples used to compare candidates (the final check uses all)
MATMUL_DOMINATED = 0.5  # share of MACs in MatMul/Gemm above which dynamic quantization is a candidate
EQUAL_SPEED = 0.05  # speeds within 5 % count as equal: the better fidelity wins
MAX_FALLBACK_STEPS = 12


@dataclass
class Tried:
    cand: Candidate
    path: Path
    fid: FidelityReport | None = None
    speedup: float | None = None

    @property
    def fidelity(self) -> FidelityReport:
        """The selection-set fidelity (the candidate must have been evaluated)."""
        if self.fid is None:
            raise RuntimeError(f"candidate {self.cand.label} was not evaluated")
        return self.fid

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.cand.label}
        if self.fid is not None:
            w = self.fid.worst
            d.update(drop=round(self.fid.drop, 6), ci95=round(self.fid.ci95, 6),
                     worst_output=w.name if w else None, headline={k: round(v, 6) for k, v in
                                                                   self.fid.headline().items()})
        if self.speedup is not None:
            d["speedup_vs_fp32"] = round(self.speedup, 3)
        return d


@dataclass
class _Run:
    cfg: QuantizeConfig
    target: TargetProfile
    src: Path
    work: Path
    calib: FeedData
    fid_data: FeedData
    fid_note: str
    pre: PreprocessResult = field(default_factory=lambda: PreprocessResult(Path()))
    state: tuple[tuple[str, str], ...] = ()
    ref_sel: Outputs = field(default_factory=dict)
    ref_all: Outputs = field(default_factory=dict)
    tried: list[Tried] = field(default_factory=list)
    calib_stats: dict[str, Any] = field(default_factory=dict)
    caches: dict[tuple[str, bool], Path] = field(default_factory=dict)
    models: dict[tuple[bool, bool], Path] = field(default_factory=dict)  # (equalized, rounded) -> fp32 model
    eq_info: dict[str, Any] = field(default_factory=dict)
    rounding: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    counter: int = 0
    speed_feed: dict[str, Any] | None = None  # the feed speed is measured on (default: the first evaluation one)

    # ------------------------------------------------------------------------------------------ helpers
    @cached_property
    def sel(self) -> FeedData:
        """The first SELECT_SAMPLES evaluation samples (read once: the candidates are compared on them)."""
        return self.fid_data.head(SELECT_SAMPLES) if self.fid_data.n > SELECT_SAMPLES else self.fid_data

    @property
    def compare(self) -> CompareConfig:
        return self.cfg.compare

    def outputs(self, path: Path, data: FeedData, what: str) -> Outputs:
        """Every output of the model at `path` on `data` (closed loop for the model's state pairs)."""
        with bar(f"evaluating {what}", data.n) as adv:
            return run_outputs(str(path), data, state=self.state, threads=self.threads, origin=what, tick=adv)

    @property
    def threads(self) -> int:
        return self.target.threads if self.target.threads > 0 else (os.cpu_count() or 1)

    def evaluate(self, t: Tried, full: bool = False) -> FidelityReport:
        data = self.fid_data if full else self.sel
        got = self.outputs(t.path, data, t.cand.label)
        fid = judge(self.ref_all if full else self.ref_sel, got, self.compare, labels=data.labels, state=self.state)
        if not full:
            t.fid = fid
        return fid

    def build(self, cand: Candidate) -> Tried:
        self.counter += 1
        dest = self.work / f"cand{self.counter}.onnx"
        src = self.model_for(cand)
        cache = None if cand.mode == "dynamic" else self.cache_for(cand.method, cand.equalized)
        run_quantizer(src, dest, cand, cache)
        t = Tried(cand, dest)
        self.tried.append(t)
        return t

    def model_for(self, cand: Candidate) -> Path:
        return self.models[(cand.equalized, cand.rounded)]

    def cache_for(self, method: str, eq: bool) -> Path:
        key = (method, eq)
        if key not in self.caches:
            both = self.cfg.method == "auto" and method in ("minmax", "histogram")
            model = self.models[(eq, False)]
            with bar("calibrating" + (" (equalized)" if eq else ""), self.calib.n * (2 if method == "histogram"
                                                                                    or both else 1)) as adv:
                res = calib_mod.calibrate(model, self.calib, method, self.work, adv, both=both)
            for m, r in res.items():
                self.caches[(m, eq)] = r.write_cache(self.work / f"ranges_{m}_{int(eq)}.json")
                self.calib_stats.setdefault(m if not eq else f"{m}+{self.eq_info.get('pre_pass', 'CLE')}", r.stats())
        return self.caches[key]


def finish(run: _Run, best: Tried, why: dict[str, str], excluded: list[dict[str, Any]],
           base_no_excl: Tried | None) -> tuple[QuantizeReport, Path]:
    """Final fidelity, side-by-side speed, census; the report."""
    tgt = run.target
    fid = run.evaluate(best, full=True)
    speed: dict[str, Any] = {"measured": False, "threads": run.threads}
    excl_cost = None
    feed = run.speed_feed if run.speed_feed is not None else next(iter(run.fid_data))
    if is_host_compatible(tgt):
        models = {"fp32": run.src, "int8": best.path}
        if base_no_excl is not None:
            models["int8_no_exclusions"] = base_no_excl.path
        t = time_side_by_side(models, feed, threads=run.threads)
        speed.update(measured=True, fp32_ms=t.median_ms["fp32"], int8_ms=t.median_ms["int8"],
                     speedup=round(t.ratio("fp32", "int8"), 3), rounds=t.rounds)
        if base_no_excl is not None:
            excl_cost = round(t.ratio("int8", "int8_no_exclusions"), 3)
    else:
        speed["note"] = f"target {tgt.name} is not this machine's kind; speed not measured here"
    opt = run.work / "optimized_for_census.onnx"
    make_session(str(best.path), threads=1, graph_optimization="extended", optimized_path=str(opt),
                 origin="int8 model")
    census = int8_census(onnx.load(str(opt)))
    census = {k: v for k, v in census.items() if k not in ("int8_nodes",)}
    unq = unquantizable_ops(run.pre.model) if run.pre.model is not None else {}  # the pre-processed model
    if unq:
        run.notes.append("left in fp32 because ONNX Runtime has no quantized form for them: "
                         + ", ".join(f"{k} x{v}" for k, v in unq.items()))
    c = best.cand
    eq = dict(run.eq_info)
    eq["applied"] = c.equalized
    if eq.get("pre_pass") == "smooth" and eq.get("smoothed_inputs"):
        eq["reason"] = ("MatMul inputs smoothed: the +smooth candidate won" if c.equalized
                        else "MatMul inputs smoothed, but the +smooth candidate did not win")
    report = QuantizeReport(
        mode=c.mode, mode_reason=why.get("mode", ""), format=c.format if c.mode == "static" else "operator",
        activation_type=c.activation_type if c.mode == "static" else "uint8 (dynamic)",
        weight_type=c.weight_type, per_channel=c.per_channel, reduce_range=c.reduce_range,
        calibrator=c.method if c.mode == "static" else "runtime", calibrator_reason=why.get("method", ""),
        format_reason=why.get("format", ""), target=tgt.name, equalization=eq,
        rounding={**run.rounding, "applied": c.rounded} if run.rounding else {}, excluded_nodes=excluded,
        exclusion_speed_cost=excl_cost, fidelity=_fidelity_dict(fid), fidelity_data=run.fid_note, speed=speed,
        census=census, calibration=run.calib_stats, candidates=[t.to_dict() for t in run.tried],
        preprocess={"pre_process": run.pre.pre_process, "transformer_fusions": run.pre.transformer_fusions,
                    "batchnorm_folded": run.pre.batchnorm_folded, "notes": run.pre.notes},
        fallbacks=list(run.pre.fallbacks), notes=run.notes + ([why["fallback"]] if "fallback" in why else []),
        unquantizable_ops=unq,
        size_mb={"fp32": round(model_size_mb(run.src), 3), "int8": round(model_size_mb(best.path), 3)},
    )
    return report, best.path


NEUTRAL_OPS = {"Shape", "Constant", "ConstantOfShape", "Cast", "Identity", "Range", "Expand", "Equal", "Not",
               "Less", "Greater", "And", "Or", "NonZero", "Size", "ReduceMax", "ReduceMin", "Dropout", "Div", "Sub",
               "Sqrt", "Pow", "Erf", "Tanh", "Exp", "Log", "ReduceMean", "ReduceSum", "Neg", "Abs", "Floor", "Ceil",
               "Max", "Min", "Sum", "Mod", "Tile", "ScatterND", "Softmax", "SkipLayerNormalization", "BiasGelu",
               "FastGelu", "Gelu", "LayerNormalization"}


def unquantizable_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Weighted / compute op types that ORT's quantizers have no int8 form for (they stay fp32, reported)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    known = set(QDQRegistry) | set(QLinearOpsRegistry) | set(IntegerOpsRegistry) | NEUTRAL_OPS
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type not in known:
            out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def fallback(run: _Run, best: Tried) -> tuple[Tried, list[dict[str, Any]], Tried | None, str]:
    """Exclude the most sensitive nodes one by one until the metric drop is within budget."""
    cfg = run.cfg
    excluded = [{"name": n, "reason": "--exclude"} for n in cfg.exclude]
    first = run.evaluate(best, full=True)
    if first.meets(cfg.max_drop):
        return best, excluded, None, ""
    ranked = rank_nodes(run.model_for(best.cand), best.path, run.calib.head(16), threads=run.threads)
    heavy = {r.name for r in ranked if r.op_type in COMPUTE}
    names = list(cfg.exclude)
    fid = first
    for r in [r for r in ranked if r.name not in cfg.exclude][:MAX_FALLBACK_STEPS]:
        names.append(r.name)
        excluded.append({"name": r.name, "reason": f"sensitivity: loses {r.loss_db:.1f} dB SQNR "
                                                   f"(output {r.sqnr_db:.1f} dB)"})
        cur = run.build(best.cand.with_(exclude=tuple(names)))
        fid = run.evaluate(cur, full=True)
        if not fid.meets(cfg.max_drop):
            continue
        if heavy and heavy <= set(names):
            raise _refused(run, first, excluded,
                           f"meeting max_drop {cfg.max_drop} took every one of the {len(heavy)} Conv/MatMul/Gemm "
                           f"nodes back to fp32: that model is not int8; nothing written (all-int8 drop "
                           f"{first.drop:.4f} on output {first.worst.name if first.worst else '?'})",
                           f"raise --max-drop (e.g. {max(first.drop * 1.2, cfg.max_drop * 2):.3g}) or give more "
                           "calibration data")
        steps = len(names) - len(cfg.exclude)
        return cur, excluded, best, f"{steps} node(s) fell back to fp32 to meet max_drop {cfg.max_drop}"
    w = fid.worst
    raise _refused(run, fid, excluded,
                   f"fidelity drop {fid.drop:.4f} on output {w.name if w else '?'} ({w.primary if w else '-'}) "
                   f"exceeds max_drop {cfg.max_drop} even after {len(names) - len(cfg.exclude)} node(s) fell back "
                   "to fp32; nothing written",
                   "raise --max-drop, --exclude more nodes, or give more/better calibration data")


def _refused(run: _Run, fid: FidelityReport, excluded: list[dict[str, Any]], message: str,
             hint: str) -> ValidationError:
    return ValidationError(message, hint=hint, report={"fidelity": _fidelity_dict(fid), "excluded_nodes": excluded,
                                                       "candidates": [t.to_dict() for t in run.tried]})


def _fidelity_dict(fid: FidelityReport) -> dict[str, Any]:
    """The report's fidelity: the deciding numbers (fp32 / int8 values of the worst output's metric) and the
    full per-output comparison."""
    b = fid.brief()
    return {**b, "fp32": b["reference"], "int8": b["candidate"], "comparison": fid.to_dict()}
