"""The weight-only low-bit quantize stage (`quantize --weights int4`): MatMul/Gemm weights to 4-bit MatMulNBits
(embedding tables to 4-bit GatherBlockQuantized), activations left in float or run as int8 inside the kernel
(ORT's accuracy_level 4), every choice measured:

1. calibration: E[x x^T] of every layer input (streamed, bounded memory);
2. the rounding algorithm (rtn / clip / gptq) by held-out fidelity at the first block size;
3. block size x symmetric/asymmetric x float/int8 activations: every candidate within --max-drop is timed side by
   side with fp32; the fastest wins (speeds within 5 % count as equal: the better fidelity wins);
4. when none is within budget: the layers with the largest output error (on calibration data) go to 8 bits,
   a doubling number at a time, until the budget holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UnsupportedError, ValidationError
from ..fidelity import FidelityReport, judge, resolve_state
from ..onnxgraph.io import model_size_mb, save_model
from ..onnxgraph.timing import time_side_by_side
from ..targets import is_host_compatible
from .lowbit_graph import Layer, Table, embedding_gathers, find_layers, hessians, rewrite
from .progress import bar
from .report import WeightOnlyReport
from .run import EQUAL_SPEED, _fidelity_dict, _Run
from .weight_only import BlockQuant, output_error, quantize_gptq, quantize_rtn

AUTO_BLOCKS = (32, 64, 128)
INT8_ACTIVATIONS = 4  # MatMulNBits accuracy_level: int8 activations inside the kernel
SELECT_SAMPLES = 64


@dataclass(frozen=True)
class Plan:
    algorithm: str
    block: int
    sym: bool
    accuracy_level: int = 0
    eight_bit: frozenset[str] = frozenset()

    def bits(self, node: str) -> int:
        return 8 if node in self.eight_bit else 4

    @property
    def label(self) -> str:
        s = f"int4 {self.algorithm} block {self.block} {'sym' if self.sym else 'asym'}"
        s += ", int8 activations" if self.accuracy_level == INT8_ACTIVATIONS else ", float activations"
        return s + (f", {len(self.eight_bit)} weight(s) 8-bit" if self.eight_bit else "")


@dataclass
class _Cand:
    plan: Plan
    path: Path
    fid: FidelityReport
    speedup: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.plan.label, "drop": round(self.fid.drop, 6),
                             "cosine": round(self.fid.cosine, 6), "size_mb": round(model_size_mb(self.path), 3)}
        if self.speedup is not None:
            d["speedup_vs_fp32"] = round(self.speedup, 3)
        return d


@dataclass
class _State:
    run: _Run
    model: onnx.ModelProto
    layers: list[Layer]
    hess: dict[str, np.ndarray]
    gathers: list[Table]
    cache: dict[tuple, BlockQuant] = field(default_factory=dict)
    tried: list[_Cand] = field(default_factory=list)
    sel_ref: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def weights(self, ly: Layer, algorithm: str, bits: int, block: int, sym: bool) -> BlockQuant:
        key = (ly.node, algorithm, bits, block, sym)
        if key not in self.cache:
            h = self.hess.get(ly.a)
            if algorithm == "gptq" and h is not None:
                self.cache[key] = quantize_gptq(ly.weight, h, bits, block, sym)
            else:
                hd = np.diag(h) if h is not None else None
                self.cache[key] = quantize_rtn(ly.weight, bits, block, sym, hdiag=hd, clip=algorithm != "rtn")
        return self.cache[key]

    def table(self, t: Table, bits: int, block: int, sym: bool) -> BlockQuant:
        """An embedding table's rows, blocks along D, clipping by the rows' squared error (no Hessian: the
        inputs are indices)."""
        key = (t.node, "clip", bits, block, sym)
        if key not in self.cache:
            self.cache[key] = quantize_rtn(t.table.T, bits, block, sym, clip=True)
        return self.cache[key]

    def plan_weights(self, plan: Plan) -> dict[str, BlockQuant]:
        q = {ly.node: self.weights(ly, plan.algorithm, plan.bits(ly.node), plan.block, plan.sym) for ly in self.layers}
        q.update({t.node: self.table(t, plan.bits(t.node), plan.block, plan.sym) for t in self.gathers})
        return q

    def errors(self, plan: Plan) -> dict[str, float]:
        """Relative output error of each layer (calibration Hessian) and table (row error) under `plan`."""
        q = self.plan_weights(plan)
        err = {ly.node: output_error(ly.weight, q[ly.node], self.hess.get(ly.a)) for ly in self.layers}
        err.update({t.node: output_error(t.table.T, q[t.node], None) for t in self.gathers})
        return err

    def build(self, plan: Plan) -> Path:
        m = rewrite(self.model, self.layers, self.plan_weights(plan), accuracy_level=plan.accuracy_level,
                    tables=self.gathers)
        path = self.run.work / f"wo{len(self.tried) + 1}.onnx"
        save_model(m, path)
        return path

    def evaluate(self, plan: Plan) -> _Cand:
        path = self.build(plan)
        run = self.run
        data = run.fid_data.head(SELECT_SAMPLES) if run.fid_data.n > SELECT_SAMPLES else run.fid_data
        if not self.sel_ref:
            self.sel_ref = {k: v[: data.n] for k, v in run.ref_all.items()}
        got = run.outputs(path, data, plan.label)
        c = _Cand(plan, path, judge(self.sel_ref, got, run.compare, labels=data.labels, state=run.state))
        self.tried.append(c)
        return c


def quantize_weight_only(run: _Run, model: onnx.ModelProto, speed_feed: dict[str, np.ndarray] | None
                         ) -> tuple[WeightOnlyReport, Path]:
    cfg = run.cfg
    layers, skipped = find_layers(model)
    if not layers:
        ops = sorted({n.op_type for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul",
                                                                           "Gemm")})
        raise UnsupportedError(f"--weights int4 quantizes MatMul/Gemm layers with constant 2-D weights; this "
                               f"model has none ({'its compute: ' + ', '.join(ops) if ops else 'no compute'}"
                               f"{'; ' + next(iter(skipped.values())) if skipped else ''})",
                               hint="use int8 (the default --weights int8) for convolutional models")
    blocks = (cfg.block_size,) if cfg.block_size else AUTO_BLOCKS
    gathers, gather_skipped = embedding_gathers(model, max(blocks))
    excluded = set(cfg.exclude)
    unknown = sorted(excluded - {ly.node for ly in layers} - {t.node for t in gathers})
    if unknown:
        raise UnsupportedError(f"exclude: {unknown} are not quantizable MatMul/Gemm layers or embedding Gathers of "
                               f"the model (they look like: {layers[0].node})")
    for e in excluded:
        skipped[e] = "--exclude"
    layers = [ly for ly in layers if ly.node not in excluded]
    gathers = [t for t in gathers if t.node not in excluded]
    if not layers:
        raise UnsupportedError("--weights int4: every quantizable MatMul/Gemm layer is excluded; nothing to quantize")
    run.state = resolve_state(cfg.compare, run.src, run.threads)
    run.ref_all = run.outputs(run.src, run.fid_data, "fp32")
    t0 = time.perf_counter()
    with bar("collecting layer statistics", run.calib.n) as adv:
        hess, cal_stats = hessians(model, layers, run.calib, threads=run.threads, tick=adv)
    st = _State(run, model, layers, hess, gathers)
    syms = (cfg.symmetric,) if cfg.symmetric is not None else (False, True)
    algos = ("rtn", "clip", "gptq") if cfg.algorithm == "auto" else (cfg.algorithm,)
    first = [st.evaluate(Plan(a, blocks[0], syms[0])) for a in algos]
    best_algo = min(first, key=lambda c: (c.fid.continuous, c.fid.drop))
    algo_reason = ("best held-out fidelity of " + ", ".join(f"{c.plan.algorithm} {1 - c.fid.continuous:.5f}"
                                                             for c in first)) if len(first) > 1 else "--algorithm"
    algo = best_algo.plan.algorithm
    grid = [best_algo] + [st.evaluate(Plan(algo, b, s)) for b in blocks for s in syms
                          if (b, s) != (blocks[0], syms[0])]
    within = [c for c in grid if c.fid.meets(cfg.max_drop)]
    fallback_note = ""
    if not within:
        within, fallback_note = [_eight_bit_fallback(st, min(grid, key=lambda c: c.fid.continuous).plan)], ""
        fallback_note = (f"{len(within[0].plan.eight_bit)} weight(s) with the largest output error went to 8 bits "
                         f"to meet max_drop {cfg.max_drop}")
    within += [st.evaluate(Plan(c.plan.algorithm, c.plan.block, c.plan.sym, INT8_ACTIVATIONS, c.plan.eight_bit))
               for c in list(within)]
    within = [c for c in within if c.fid.meets(cfg.max_drop)]
    feed = speed_feed if speed_feed is not None else next(iter(run.fid_data))
    best, speed = _fastest(run, within, feed)
    fid = judge(run.ref_all, run.outputs(best.path, run.fid_data, best.plan.label), run.compare,
                labels=run.fid_data.labels)
    p = best.plan
    err = st.errors(p)
    rtn = st.errors(Plan("rtn", p.block, p.sym, 0, p.eight_bit))
    layer_err = {ly.node: err[ly.node] for ly in layers}
    q = st.plan_weights(p)
    fp32_w = sum(ly.weight.nbytes for ly in layers)
    q_w = sum(q[ly.node].nbytes for ly in layers)
    tab_fp32 = sum(t.table.nbytes for t in gathers)
    tab_q = sum(q[t.node].nbytes for t in gathers)
    worst = sorted(err.items(), key=lambda kv: -kv[1])[:8]
    eight = set(p.eight_bit)
    report = WeightOnlyReport(
        weights="int4", algorithm=p.algorithm, algorithm_reason=algo_reason, block_size=p.block, symmetric=p.sym,
        activations="int8 (in the kernel, accuracy_level 4)" if p.accuracy_level else "float",
        layers={"int4": sum(ly.node not in eight for ly in layers), "int8": sum(ly.node in eight for ly in layers),
                "kept_float": skipped, "int8_layers": sorted(eight & {ly.node for ly in layers})},
        layer_error={"mean_rel_output_error": float(np.mean(list(layer_err.values()))),
                     "mean_rel_output_error_rtn": float(np.mean([rtn[ly.node] for ly in layers])),
                     "worst": [{"weight": k, "rel_output_error": round(v, 6)} for k, v in worst]},
        embeddings={"int4": sum(t.node not in eight for t in gathers), "int8": sum(t.node in eight for t in gathers),
                    "skipped": gather_skipped, "bytes_fp32": tab_fp32, "bytes_quantized": tab_q},
        weight_bytes={"fp32": fp32_w, "quantized": q_w, "ratio": round(q_w / max(fp32_w, 1), 4)},
        fidelity=_fidelity_dict(fid), fidelity_data=run.fid_note, speed=speed,
        calibration={**cal_stats, "seconds_total": round(time.perf_counter() - t0, 1)},
        candidates=[c.to_dict() for c in st.tried], notes=run.notes + ([fallback_note] if fallback_note else []),
        size_mb={"fp32": round(model_size_mb(run.src), 3), "int4": round(model_size_mb(best.path), 3)},
        target=run.target.name)
    return report, best.path


def _eight_bit_fallback(st: _State, plan: Plan) -> _Cand:
    """Move the weights (layers, embedding tables) with the largest relative output error to 8 bits, 1, 2, 4, ...
    at a time."""
    cfg = st.run.cfg
    err = st.errors(plan)
    ranked = sorted(err, key=lambda k: -err[k])
    step = 1
    cand = None
    while True:
        n = min(step, len(ranked))
        cand = st.evaluate(Plan(plan.algorithm, plan.block, plan.sym, 0, frozenset(ranked[:n])))
        if cand.fid.meets(cfg.max_drop):
            return cand
        if n == len(ranked):
            w = cand.fid.worst
            raise ValidationError(
                f"int4 weight-only: fidelity drop {cand.fid.drop:.4f} on output {w.name if w else '?'} "
                f"({w.primary if w else '-'}) exceeds max_drop {cfg.max_drop} even with every layer at 8 bits; "
                "nothing written", hint="raise --max-drop, or use --weights int8 (activations quantized too)",
                report={"candidates": [c.to_dict() for c in st.tried]})
        step *= 2


def _fastest(run: _Run, cands: list[_Cand], feed: dict[str, np.ndarray]) -> tuple[_Cand, dict[str, Any]]:
    """Time every candidate beside fp32; the fastest wins, the better fidelity among those within 5 %."""
    speed: dict[str, Any] = {"measured": False, "threads": run.threads}
    if not is_host_compatible(run.target):
        speed["note"] = f"target {run.target.name} is not this machine's kind; speed not measured here"
        return min(cands, key=lambda c: (c.fid.continuous, model_size_mb(c.path))), speed
    models = {"fp32": run.src, **{f"c{i}": c.path for i, c in enumerate(cands)}}
    t = time_side_by_side(models, feed, threads=run.threads)
    for i, c in enumerate(cands):
        c.speedup = t.ratio("fp32", f"c{i}")
    top = max(c.speedup or 0.0 for c in cands)
    near = [c for c in cands if (c.speedup or 0.0) >= top * (1 - EQUAL_SPEED)]
    best = min(near, key=lambda c: (c.fid.continuous, c.fid.drop))
    i = cands.index(best)
    speed.update(measured=True, fp32_ms=t.median_ms["fp32"], int4_ms=t.median_ms[f"c{i}"],
                 speedup=round(best.speedup or 0.0, 3), rounds=t.rounds,
                 feed={k: list(np.shape(v)) for k, v in feed.items()})
    return best, speed
