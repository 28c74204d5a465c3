"""The prune stage: load -> analyze groups -> score -> select -> remove -> recover -> validate -> save."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from ..artifact import ModelArtifact, StageResult
from ..data import FeedData, load_data, random_feeds
from ..errors import ConfigError, UnsupportedError, ValidationError
from ..fidelity import FidelityReport, Outputs, holdout, judge, resolve_state, run_outputs
from ..fsutil import check_output_path
from ..onnxgraph import census
from ..onnxgraph.io import check_model, input_specs, load_model, output_specs, save_model
from ..onnxgraph.runtime import make_session
from ..targets import get_target
from .apply import ChannelRemovalPass
from .bnstats import BatchNormMomentMatching
from .compensate import MeanCompensation
from .config import PruneConfig
from .criteria import activation_means, compute_scores
from .graphutil import drop_unused_initializers, prepare, reshare_constants, to_proto
from .groups import Analysis, analyze
from .reconstruct import LeastSquaresReconstruction
from .report import GroupReport, PruneReport, UnprunableGroup
from .select import MacModel, make_plan, select_magnitude, select_ratio, select_target_macs


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
        self.base = base.SerializeToString()
        self.compare = config.compare
        self.state = resolve_state(self.compare, self.base)
        self.refs: dict[int, tuple[FeedData, Outputs]] = {}
        self.done: dict[tuple[int, int], tuple[onnx.ModelProto, FeedData, FidelityReport]] = {}

    def __call__(self, got: onnx.ModelProto, data: FeedData) -> FidelityReport:
        key = (id(got), id(data))
        if key not in self.done:
            if id(data) not in self.refs:
                self.refs[id(data)] = data, run_outputs(self.base, data, state=self.state, origin="input model")
            outs = run_outputs(got.SerializeToString(), data, state=self.state, origin="pruned model")
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
          calibration: Any = None, eval_data: Any = None, target: Any = None) -> StageResult:
    """Structured pruning of an ONNX model (see docs/prune.md)."""
    art = _as_artifact(model)
    out = check_output_path(out)
    src = load_model(art.path)
    round_to = _round_to(config, target)
    notes: list[str] = []
    calib = _data(calibration, src, "calibration data", config.samples)
    evald = _data(eval_data, src, "evaluation data", None)
    if config.criterion == "activation" and calib is None:
        raise ConfigError("criterion 'activation' needs calibration data (--calibration)")
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
    acts = activation_means(base.SerializeToString(), analysis, gids, feeds) if config.criterion == "activation" else None
    scores, more = compute_scores(work, analysis, gids, config.criterion, acts)
    notes += more
    macs0 = census.count_macs(base)
    if config.target_macs is not None:
        counts, more = select_target_macs(analysis, scores, config.target_macs, round_to, config.min_keep,
                                                     MacModel(analysis, macs0.per_node, macs0.total))
        notes += more
        mode = "target_macs"
    elif config.criterion == "magnitude":
        counts = select_magnitude(analysis, scores, config.alpha, round_to, config.min_keep, config.ratio)
        mode = "magnitude"
    else:
        counts = select_ratio(analysis, scores, config.ratio or 0.0, round_to, config.min_keep)
        mode = "ratio"
    keep = make_plan(analysis, scores, counts)

    pruned_ir = ir.from_proto(base)
    ChannelRemovalPass(analysis, keep)(pruned_ir)
    if feeds is not None and config.compensate:
        comp = MeanCompensation(base, analysis, keep, feeds)
        if comp(pruned_ir):
            notes.append(f"the removed channels' mean contribution moved into {len(comp.compensated)} consumer "
                         "bias(es)")
        notes += comp.notes
    raw = to_proto(pruned_ir)
    final, recon, bn_done = raw, [], []
    check = evald or held or calib
    if check is None and all(t.dtype.kind == "f" for t in input_specs(src)):
        check = random_feeds(input_specs(src), 4, seed=0)
        notes.append("no calibration/eval data: fidelity is measured on 4 random inputs")
    fids = _Fidelities(base, config)
    fid_raw = fids(raw, check) if check is not None else None
    fid = fid_raw
    if calib is not None and config.reconstruct and keep:
        ls = LeastSquaresReconstruction(base, analysis, keep, feeds)
        ls(pruned_ir)
        bn = BatchNormMomentMatching(base, analysis, keep, feeds)
        bn(pruned_ir)
        notes += ls.notes
        recon, bn_done = ls.refitted, bn.updated
        final = to_proto(pruned_ir)
        fid = fids(final, check)
        if fid_raw is not None and fid.rel_error > fid_raw.rel_error:
            notes.append(f"reconstruction raised the output error on the {'evaluation' if evald else 'held-out'} "
                         f"data ({fid_raw.rel_error:.4g} -> {fid.rel_error:.4g}); the model without reconstruction "
                         "is written")
            final, fid, recon, bn_done = raw, fid_raw, [], []
    if config.max_drop is not None and fid is not None and not fid.meets(config.max_drop):
        w = fid.worst
        raise ValidationError(f"pruned model is outside the budget: drop {fid.drop:.4f} on output "
                              f"{w.name if w else '?'} ({w.primary if w else '-'}) > max_drop {config.max_drop} "
                              f"({fid.samples} samples); nothing written",
                              hint="prune less (--target-macs closer to 1 / a smaller --ratio), give more calibration "
                                   "data for reconstruction, or raise --max-drop",
                              report={"fidelity": fid.to_dict()})
    merged, dropped = reshare_constants(final), drop_unused_initializers(final)
    if merged or dropped:
        notes.append(f"constants tidied: {merged} copies made for the analysis merged back (equal content), "
                     f"{dropped} no longer read removed")
    _validate(src, final, loaded=check is not None)  # fidelity loaded `final` in ORT whenever it was measured
    save_model(final, out)

    macs1 = census.count_macs(final)
    groups, blocked = _group_reports(analysis, scores, keep)
    report = PruneReport(config.criterion, mode, round_to, groups, blocked, census.count_params(src),
                         census.count_params(final), macs0.total, macs1.total, fid,
                         fid_raw if recon or bn_done else None, tuple(recon), tuple(bn_done), tuple(notes))
    metrics = {"macs_kept": report.macs_kept, "params_kept": report.params_kept}
    if fid is not None:
        metrics["cosine"] = fid.cosine
    return StageResult(art.derive(Path(out), "prune", config=config, metrics=metrics), report)


def _validate(src: onnx.ModelProto, final: onnx.ModelProto, *, loaded: bool) -> None:
    try:
        check_model(final, "pruned model")
    except Exception as exc:  # ModelError from the checker: our bug, reported as a failed validation
        raise ValidationError(f"pruned model fails the ONNX checker: {exc}") from None
    if [(t.name, t.dtype) for t in input_specs(final)] != [(t.name, t.dtype) for t in input_specs(src)] or \
            [t.name for t in output_specs(final)] != [t.name for t in output_specs(src)]:
        raise ValidationError("pruned model changed the model's I/O signature")
    if not loaded:
        make_session(final.SerializeToString(), origin="pruned model")
