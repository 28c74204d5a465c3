"""The prune stage: load -> analyze groups -> score -> select -> remove -> recover -> validate -> save."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from ..artifact import ModelArtifact, StageResult
from ..data import FeedData, feed_key, load_data, random_feeds
from ..errors import ConfigError, UnsupportedError, ValidationError
from ..fidelity import FidelityReport, Outputs, holdout, judge, resolve_state, run_outputs
from ..fsutil import check_output_path
from ..onnxgraph import census
from ..onnxgraph.io import check_model, input_specs, load_model, output_specs, save_model
from ..onnxgraph.runtime import make_session
from ..onnxgraph.timing import time_side_by_side
from ..targets import get_target, is_host_compatible
from .apply import ChannelRemovalPass
from .bnstats import BatchNormMomentMatching
from .compensate import MeanCompensation
from .config import PruneConfig
from .criteria import activation_means, compute_scores
from .graphutil import drop_unused_initializers, prepare, reshare_constants, to_proto
from .groups import Analysis, analyze
from .reconstruct import LeastSquaresReconstruction
from .report import GroupReport, PruneReport, UnprunableGroup
from .search import Candidate, CurvePoint, find, point, refine
from .select import MacModel, make_plan, one_unit_counts, select_magnitude, select_ratio, select_target_macs


def _as_artifact(model: str | os.PathLike[str] | ModelArtifact) -> ModelArtifact:
    return model if isinstance(model, ModelArtifact) else ModelArtifact(Path(model), "onnx", "input")


def _round_to(config: PruneConfig, target: Any) -> int:
    if config.round_to is not None:
        return config.round_to
    if target is None:
        return 8
    return get_target(target).round_to


def _data(spec: Any, model: onnx.ModelProto, what: str, limit: int | None) -> FeedData | None:
    if spec is None:
        return None
    fd = load_data(spec, what=what).validated(input_specs(model), what=what)
    return fd.head(limit) if limit else fd


def unprunable_error(analysis: Analysis) -> UnsupportedError:
    lines = [f"{g.name}: {g.reasons[0]}" for g in analysis.groups]
    report = {"unprunable": [{"name": g.name, "channels": g.size, "reasons": g.reasons} for g in analysis.groups]}
    shown = "; ".join(lines[:6]) + (f"; ... ({len(lines) - 6} more)" if len(lines) > 6 else "")
    return UnsupportedError(f"nothing in this graph can be pruned safely: {shown or 'no Conv/Gemm/MatMul channels'}",
                            hint="see the reasons per group (--json); use --skip or re-export the model", report=report)


class _Fidelities:
    """The pruned models' fidelity (edgecompress.fidelity, every output) on datasets; the input model runs once per
    dataset and each (model, dataset) pair is measured once."""

    def __init__(self, base: onnx.ModelProto, config: PruneConfig) -> None:
        self.base = base  # a ModelProto: ORT gets bytes, or external data for one over 2 GB (make_session)
        self.compare = config.compare
        self.state = resolve_state(self.compare, self.base)
        self.refs: dict[int, tuple[FeedData, Outputs]] = {}
        self.done: dict[tuple[int, int], tuple[onnx.ModelProto, FeedData, FidelityReport]] = {}

    def __call__(self, got: onnx.ModelProto, data: FeedData) -> FidelityReport:
        key = (id(got), id(data))
        if key not in self.done:
            if id(data) not in self.refs:
                self.refs[id(data)] = data, run_outputs(self.base, data, state=self.state, origin="input model")
            outs = run_outputs(got, data, state=self.state, origin="pruned model")
            rep = judge(self.refs[id(data)][1], outs, self.compare, labels=data.labels, state=self.state)
            if rep.broken:
                b = rep.broken[0]
                raise ValidationError(f"pruned model output {b.name!r} is broken: {'; '.join(b.notes)}",
                                      report={"fidelity": rep.to_dict()})
            self.done[key] = got, data, rep
        return self.done[key][2]


def _group_reports(analysis: Analysis, scores: dict, keep: dict) -> tuple[tuple, tuple]:
    done, blocked = [], []
    for g in analysis.groups:
        if not g.prunable:
            blocked.append(UnprunableGroup(g.name, g.kind, g.size, tuple(g.origins), tuple(g.reasons)))
            continue
        kept = keep.get(g.id)
        removed = () if kept is None else tuple(int(i) for i in np.setdiff1d(np.arange(g.size), kept))
        sc = scores.get(g.id)
        done.append(GroupReport(g.id, g.name, g.kind, g.unit, g.size, g.size - len(removed), tuple(g.origins),
                                tuple(round(float(v), 6) for v in sc) if sc is not None else (), removed))
    return tuple(done), tuple(blocked)


def prune(model: str | os.PathLike[str] | ModelArtifact, config: PruneConfig, *, out: str | os.PathLike[str],
          calibration: Any = None, eval_data: Any = None, target: Any = None, recover_data: Any = None,
          progress: bool = False) -> StageResult:
    """Structured pruning of an ONNX model (see docs/prune.md); with config.recover, distilled back from the input
    model on `recover_data` (unlabeled; default: the calibration data)."""
    art = _as_artifact(model)
    out = check_output_path(out)
    src = load_model(art.path)
    round_to = _round_to(config, target)
    notes: list[str] = []
    calib = _data(calibration, src, "calibration data", config.samples)
    evald = _data(eval_data, src, "evaluation data", None)
    if config.criterion in ("activation", "taylor") and calib is None:
        raise ConfigError(f"criterion '{config.criterion}' needs calibration data (--calibration)")
    held = None
    if evald is None and calib is not None:
        calib, held = holdout(calib)
        if held is not None:
            notes.append(f"no --eval: fidelity is measured on {held.n} held-out calibration samples (the other "
                         f"{calib.n} are used for statistics and reconstruction)")
        else:
            notes.append(f"no --eval and only {calib.n} calibration samples: fidelity is measured on the samples "
                         "reconstruction was fitted on (optimistic); pass --eval for an independent check")

    work = prepare(src)
    base = to_proto(work, keep_shapes=True)
    analysis = analyze(work, config.skip)
    notes += analysis.notes
    gids = [g.id for g in analysis.groups if g.prunable]
    if not gids:
        raise unprunable_error(analysis)

    feeds = calib.feeds() if calib is not None else None
    acts = activation_means(base, analysis, gids, feeds) if config.criterion == "activation" else None
    taylor = None
    if config.criterion == "taylor":
        from .taylor import taylor_scores

        if calib is None:  # raised as a ConfigError above
            raise RuntimeError("criterion 'taylor' without calibration data")
        taylor = taylor_scores(base, analysis, gids, calib)
    scores, more = compute_scores(work, analysis, gids, config.criterion, acts, taylor)
    notes += more
    check = evald or held or calib
    if check is None and config.searches:
        raise ConfigError("with neither --ratio nor --target-macs, prune searches the largest reduction inside "
                          "--max-drop, which is measured on data: give --calibration or --eval")
    if check is None and all(t.dtype.kind == "f" for t in input_specs(src)):
        check = random_feeds(input_specs(src), 4, seed=0)
        notes.append("no calibration/eval data: fidelity is measured on 4 random inputs, a weak check; pass --eval")
    macs0 = census.count_macs(base)
    params0 = census.count_params(src)
    build = _Builder(base, analysis, scores, config, feeds, check, macs0.total, params0, evald is not None)
    mode, counts_at, top, more = _levels(analysis, scores, config, round_to, MacModel(analysis, macs0.per_node,
                                                                                      macs0.total))
    notes += more
    full = {gid: analysis.groups[gid].size for gid in gids}
    recovery = None
    best: Candidate | None
    if config.recover:
        rdata = _recover_data(recover_data, src, calib, held if evald is None else None, notes)
        best, recovery = _recovered(build, base, top, counts_at(top), config, rdata, check, Path(out), progress)
        tried = [best]
    elif mode == "magnitude":
        c = build(0.0, counts_at(0.0))
        best, tried = (c if c.within(config.max_drop) else None), [c]
    else:
        best, tried = find(build, counts_at, full, top, config.max_drop, first=not config.searches)
        if best is None and tried and config.searches:
            one = one_unit_counts(analysis, gids, round_to, config.min_keep)
            best, more_tried = refine(build, full, one, config.max_drop)
            tried += more_tried
            if best is not None:
                notes.append(f"the global ranking's smallest step was outside the budget: {len(one)} groups probed "
                             f"one at a time ({len(more_tried)} candidates), the ones inside combined greedily")
        if best is None and not tried:  # the selection keeps every channel (e.g. --ratio 0): the model as it is
            best = build(top, counts_at(top))
            tried = [best]
    curve = _curve(src, best, tried, config.max_drop, check, target)
    if best is None:
        raise _outside(tried, config, mode, curve)
    notes += best.notes
    if best.level < top - 1e-12 and mode != "magnitude" and not config.recover:
        first = tried[0]
        notes.append(_backed_off(config, mode, first, best, len(tried)) if not config.searches else
                     f"searched {len(tried)} reductions: the largest inside max_drop {config.max_drop} keeps "
                     f"{best.macs_kept:.3f} of the MACs (see the curve)")
    final, fid = best.model, best.fidelity
    merged, dropped = reshare_constants(final), drop_unused_initializers(final)
    if merged or dropped:
        notes.append(f"constants tidied: {merged} copies made for the analysis merged back (equal content), "
                     f"{dropped} no longer read removed")
    _validate(src, final, loaded=check is not None)  # fidelity loaded `final` in ORT whenever it was measured
    save_model(final, out)

    macs1 = census.count_macs(final)
    groups, blocked = _group_reports(analysis, scores, best.keep)
    report = PruneReport(config.criterion, mode, round_to, groups, blocked, params0, census.count_params(final),
                         macs0.total, macs1.total, fid,
                         best.fidelity_raw if best.reconstructed or best.bn_updated else None,
                         best.reconstructed, best.bn_updated, tuple(notes), config.max_drop, tuple(curve), recovery)
    metrics = {"macs_kept": report.macs_kept, "params_kept": report.params_kept}
    if fid is not None:
        metrics["cosine"] = fid.cosine
    return StageResult(art.derive(Path(out), "prune", config=config, metrics=metrics), report)


def _recover_data(spec: Any, src: onnx.ModelProto, calib: FeedData | None, held: FeedData | None,
                  notes: list[str]) -> FeedData:
    """The unlabeled recovery data, without any sample of the held-out split the budget is judged on."""
    data = _data(spec, src, "recover data", None) if spec is not None else calib
    if data is None:
        raise ConfigError("--recover needs unlabeled data: give --recover DATA or --calibration")
    if held is not None:
        judged = {feed_key(f) for f in held.feeds()}
        feeds = [f for f in data.feeds() if feed_key(f) not in judged]
        if len(feeds) < data.n:
            notes.append(f"{data.n - len(feeds)} recover sample(s) are in the held-out split the budget is judged "
                         "on and were left out of the recovery")
            if not feeds:
                raise ConfigError("--recover: every recover sample is in the held-out check split",
                                  hint="give --eval data, or other --recover data than --calibration")
            data = FeedData.from_feeds(feeds)
    return data


def _recovered(build: _Builder, base: onnx.ModelProto, level: float, counts: dict[int, int], config: PruneConfig,
               data: FeedData, check: FeedData | None, out: Path, progress: bool) -> tuple[Candidate, dict]:
    """The requested reduction, distilled back from the input model (kept only where it measured better)."""
    from ..distill.recover import RecoverSettings, recover

    c = build(level, counts)
    settings = RecoverSettings(config.recover_steps, config.recover_batch_size, config.recover_lr, config.device,
                               resume=config.resume, synthetic=config.recover_synthetic)
    model, rep = recover(base, c.model, data, settings, state_path=out.with_name(out.name + ".recover-state"),
                         progress=progress)
    fid = build.fids(model, check) if check is not None else None
    info: dict[str, Any] = {**rep.to_dict(), "fidelity_before": c.fidelity.to_dict() if c.fidelity else None,
                            "kept": True}
    if fid is not None and c.fidelity is not None and fid.drop > c.fidelity.drop and \
            fid.continuous >= c.fidelity.continuous:
        c.notes.append(f"recovery made the model worse on the check data (drop {c.fidelity.drop:.4f} -> "
                       f"{fid.drop:.4f}); the model before recovery is kept")
        info["kept"] = False
        return c, info
    before = f"{c.fidelity.drop:.4f}" if c.fidelity is not None else "-"
    after = f"{fid.drop:.4f}" if fid is not None else "-"
    notes = c.notes + [f"recovered by distillation from the input model: {rep.steps} steps of {rep.batch_size} on "
                       f"{rep.samples} unlabeled samples, {rep.seconds:.0f} s on {rep.device}; drop {before} -> "
                       f"{after}"]
    return Candidate(level, c.counts, c.keep, model, fid, c.fidelity_raw, c.reconstructed, c.bn_updated, c.macs_kept,
                     c.params_kept, notes), info


SEARCH_TOP = 0.95  # with no reduction asked for, the search spans MACs kept in [0.05, 1]
CURVE_TIMING_S = 3.0  # side-by-side timing of the curve's points


def _levels(analysis: Analysis, scores: dict, config: PruneConfig, round_to: int, macs: MacModel):
    """(mode, level -> kept counts, the requested level, notes); a level is the reduction asked of the selection."""
    if config.criterion == "magnitude" and config.target_macs is None:
        counts = select_magnitude(analysis, scores, config.alpha, round_to, config.min_keep, config.ratio)
        return "magnitude", lambda _level: counts, 0.0, []
    if config.ratio is not None:
        return "ratio", lambda r: select_ratio(analysis, scores, r, round_to, config.min_keep), config.ratio, []
    top = 1.0 - config.target_macs if config.target_macs is not None else SEARCH_TOP
    _, notes = select_target_macs(analysis, scores, 1.0 - top, round_to, config.min_keep, macs)
    return ("target_macs" if config.target_macs is not None else "search",
            lambda r: select_target_macs(analysis, scores, 1.0 - r, round_to, config.min_keep, macs)[0], top,
            notes if config.target_macs is not None else [])


class _Builder:
    """Builds the pruned model for one selection: remove, compensate, reconstruct where it helps, measure."""

    def __init__(self, base: onnx.ModelProto, analysis: Analysis, scores: dict, config: PruneConfig,
                 feeds: Any, check: FeedData | None, macs0: int, params0: int, on_eval: bool) -> None:
        self.base, self.analysis, self.scores, self.config = base, analysis, scores, config
        self.feeds, self.check, self.macs0, self.params0, self.on_eval = feeds, check, macs0, params0, on_eval
        self.fids = _Fidelities(base, config)

    def __call__(self, level: float, counts: dict[int, int]) -> Candidate:
        config, notes = self.config, []
        keep = make_plan(self.analysis, self.scores, counts)
        pruned_ir = ir.from_proto(self.base)
        ChannelRemovalPass(self.analysis, keep)(pruned_ir)
        if self.feeds is not None and config.compensate:
            comp = MeanCompensation(self.base, self.analysis, keep, self.feeds)
            if comp(pruned_ir):
                notes.append(f"the removed channels' mean contribution moved into {len(comp.compensated)} "
                             "consumer bias(es)")
            notes += comp.notes
        raw = to_proto(pruned_ir)
        final = raw
        recon: tuple[str, ...] = ()
        bn_done: tuple[str, ...] = ()
        fid_raw = self.fids(raw, self.check) if self.check is not None else None
        fid = fid_raw
        if self.feeds is not None and config.reconstruct and keep:
            ls = LeastSquaresReconstruction(self.base, self.analysis, keep, self.feeds)
            ls(pruned_ir)
            bn = BatchNormMomentMatching(self.base, self.analysis, keep, self.feeds)
            bn(pruned_ir)
            notes += ls.notes
            recon, bn_done = tuple(ls.refitted), tuple(bn.updated)
            final = to_proto(pruned_ir)
            if self.check is None:  # feeds come from calibration data, which is then the check data at the least
                raise RuntimeError("reconstruction without check data")
            fid = self.fids(final, self.check)
            if fid_raw is not None and fid.rel_error > fid_raw.rel_error:
                notes.append(f"reconstruction raised the output error on the "
                             f"{'evaluation' if self.on_eval else 'held-out'} data ({fid_raw.rel_error:.4g} -> "
                             f"{fid.rel_error:.4g}); the model without reconstruction is written")
                final, fid, recon, bn_done = raw, fid_raw, (), ()
        macs = census.count_macs(final).total
        return Candidate(level, dict(counts), keep, final, fid, fid_raw, recon, bn_done,
                         macs / self.macs0 if self.macs0 else 1.0,
                         census.count_params(final) / self.params0 if self.params0 else 1.0, notes)


def _curve(src: onnx.ModelProto, best: Candidate | None, tried: list[Candidate], max_drop: float,
           check: FeedData | None, target: Any) -> list[CurvePoint]:
    """Every tried point, sorted by MACs kept; with two or more and a target this machine can stand for, each
    point's speed-up over the input model, measured side by side in one run."""
    speed: dict[int, float] = {}
    if len(tried) >= 2 and check is not None and is_host_compatible(get_target(target)):
        models: dict[str, Any] = {"input": src}
        models.update({f"c{i}": c.model for i, c in enumerate(tried)})
        tm = time_side_by_side(models, next(iter(check.head(1))), threads=1, budget_s=CURVE_TIMING_S)
        speed = {i: tm.ratio("input", f"c{i}") for i in range(len(tried))}
    pts = [point(c, max_drop, chosen=c is best, speedup=speed.get(i)) for i, c in enumerate(tried)]
    return sorted(pts, key=lambda p: -p.macs_kept)



def _backed_off(config: PruneConfig, mode: str, first: Candidate, best: Candidate, n: int) -> str:
    asked = f"--ratio {config.ratio}" if mode == "ratio" else f"--target-macs {config.target_macs}"
    f = first.fidelity
    if f is None:  # a candidate without fidelity is inside the budget: never backed off from
        raise RuntimeError("backed off from a candidate without fidelity")
    w = f.worst
    return (f"{asked} dropped {f.drop:.4f} on output {w.name if w else '?'} "
            f"({w.primary if w else '-'}) > max_drop {config.max_drop}: backed off to the largest reduction inside "
            f"the budget of {n} tried (MACs kept {best.macs_kept:.3f}); see the curve")


def _outside(tried: list[Candidate], config: PruneConfig, mode: str, curve: list[CurvePoint]) -> ValidationError:
    least = min(tried, key=lambda c: c.fidelity.drop if c.fidelity is not None else 0.0)
    f = least.fidelity
    if f is None:  # a candidate without fidelity is inside the budget: none is when nothing was chosen
        raise RuntimeError("no candidate inside the budget, yet one without fidelity")
    w = f.worst
    what = "the reduction" if mode == "magnitude" else f"every one of the {len(tried)} reductions tried"
    return ValidationError(
        f"no pruned model inside the budget: {what} dropped more than max_drop {config.max_drop}; the least "
        f"(MACs kept {least.macs_kept:.3f}) dropped {f.drop:.4f} on output {w.name if w else '?'} "
        f"({w.primary if w else '-'}, {f.samples} samples); nothing written",
        hint="raise --max-drop, give more calibration data for compensation and reconstruction, or prune and "
             "win the accuracy back with distillation (edgecompress distill --student-from-pruned)",
        report={"fidelity": f.to_dict(), "curve": [p.to_dict() for p in curve]})


def _validate(src: onnx.ModelProto, final: onnx.ModelProto, *, loaded: bool) -> None:
    try:
        check_model(final, "pruned model")
    except Exception as exc:  # ModelError from the checker: our bug, reported as a failed validation
        raise ValidationError(f"pruned model fails the ONNX checker: {exc}") from None
    if [(t.name, t.dtype) for t in input_specs(final)] != [(t.name, t.dtype) for t in input_specs(src)] or \
            [t.name for t in output_specs(final)] != [t.name for t in output_specs(src)]:
        raise ValidationError("pruned model changed the model's I/O signature")
    if not loaded:
        make_session(final, origin="pruned model")
