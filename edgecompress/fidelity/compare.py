"""The one comparison of two models: run both on the same data (closed loop for stateful models) and judge
every output (metrics.py) plus matched detections where the user names the box/score outputs (detection.py).

Every stage that changes numbers (prune, quantize), bench, package and the pipeline summary use it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Feed, FeedData
from ..errors import DataError
from .config import CompareConfig, DetectionSpec
from .detection import DetectionFidelity, detection_fidelity, detection_outputs
from .metrics import OutputFidelity, tensor_metrics

Model = Any  # a path, serialized bytes, an onnx.ModelProto, or an open onnxruntime.InferenceSession
Outputs = dict[str, list[np.ndarray]]  # output name -> per-sample arrays, in the model's output order


@dataclass(frozen=True)
class FidelityReport:
    """Candidate vs reference over every output. `drop` is the worst output's (the detection recall's where
    one is named); a budget holds when drop <= max_drop."""

    outputs: tuple[OutputFidelity, ...]
    samples: int
    detection: DetectionFidelity | None = None
    state: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def worst(self) -> OutputFidelity | None:
        return max(self.outputs, key=lambda o: o.drop) if self.outputs else None

    @property
    def drop(self) -> float:
        w = self.worst
        return w.drop if w is not None else 0.0

    @property
    def ci95(self) -> float:
        w = self.worst
        return w.ci95 if w is not None else 1.0

    def meets(self, max_drop: float) -> bool:
        return self.drop <= max_drop + 1e-12

    @property
    def continuous(self) -> float:
        """A continuous distance (worst 1 - balanced cosine) that breaks ties between discrete task metrics."""
        vals = [1.0 - o.metrics["balanced_cosine"] for o in self.outputs if "balanced_cosine" in o.metrics]
        return max(vals) if vals else self.drop

    @property
    def cosine(self) -> float:
        """The lowest mean per-sample cosine over the outputs."""
        return min((o.metrics["cosine"] for o in self.outputs if "cosine" in o.metrics), default=1.0)

    @property
    def rel_error(self) -> float:
        """The largest relative error ||ref - got|| / ||ref|| over the float outputs."""
        return max((o.metrics["rel_error"] for o in self.outputs if "rel_error" in o.metrics), default=0.0)

    @property
    def broken(self) -> tuple[OutputFidelity, ...]:
        """Outputs the candidate cannot stand for at all (missing, other shape, NaN/Inf)."""
        return tuple(o for o in self.outputs if o.kind == "broken")

    def brief(self) -> dict[str, Any]:
        """The deciding numbers in one flat dict: the worst output's metric, its reference and candidate value
        (accuracy against labels: both models'; else agreement with the reference: 1.0 for the reference)."""
        w = self.worst
        if w is None:
            return {"metric": "none", "against": "reference", "reference": 1.0, "candidate": 1.0, "drop": 0.0,
                    "samples": self.samples}
        labels = w.primary == "accuracy"
        ref = w.metrics["accuracy_reference"] if labels else (0.0 if w.primary == "nmse" else 1.0)
        got = w.metrics.get(w.primary, 1.0 - w.drop)
        return {"metric": w.primary, "output": w.name, "against": "labels" if labels else "reference",
                "reference": round(float(ref), 6), "candidate": round(float(got), 6), "drop": round(self.drop, 6),
                "ci95": round(w.ci95, 6), "samples": self.samples,
                "cosine": round(min((o.metrics.get("cosine", 1.0) for o in self.outputs), default=1.0), 6)}

    def output(self, name: str) -> OutputFidelity:
        return next(o for o in self.outputs if o.name == name)

    def headline(self) -> dict[str, float]:
        """The task-level numbers, each the worst over the outputs that have it (for tables)."""
        worst_high = ("top1_agreement", "top5_containment", "decision_agreement", "balanced_cosine", "cosine",
                      "slice_cosine_min", "sqnr_db", "accuracy", "exact_agreement")
        out: dict[str, float] = {}
        for key in worst_high:
            vals = [o.metrics[key] for o in self.outputs if key in o.metrics]
            if vals:
                out[key] = float(min(vals))
        for key in ("accuracy_reference",):
            vals = [o.metrics[key] for o in self.outputs if key in o.metrics]
            if vals:
                out[key] = float(vals[0])
        if self.detection is not None:
            out["detection_recall"] = self.detection.recall
            out["detection_precision"] = self.detection.precision
        out["drop"] = self.drop
        return out

    def summary(self) -> str:
        w = self.worst
        if w is None:
            return "no outputs compared"
        parts = [f"{o.name}: {o.primary} {o.metrics.get(o.primary, 1 - o.drop):.4g}" for o in self.outputs]
        if self.detection is not None:
            parts.append(f"detections: recall {self.detection.recall:.4f} of {self.detection.reference_detections}")
        return f"{self.samples} samples; " + "; ".join(parts) + f"; worst {w.name} (drop {w.drop:.4g} +- {w.ci95:.2g})"

    def to_dict(self) -> dict[str, Any]:
        w = self.worst
        return {"samples": self.samples, "drop": round(self.drop, 6), "ci95": round(self.ci95, 6),
                "worst_output": w.name if w else None, "headline": {k: round(v, 6) for k, v in self.headline().items()},
                "outputs": [o.to_dict() for o in self.outputs],
                "detection": self.detection.to_dict() if self.detection else None,
                "state": [list(p) for p in self.state], "notes": list(self.notes)}


HOLDOUT_MIN = 20  # below this many calibration samples nothing is held out (too few to fit on three quarters)


def holdout(calib: FeedData) -> tuple[FeedData, FeedData | None]:
    """(samples to fit on, a held-out quarter to judge on) when no evaluation data is given; the held-out part
    is None when there are fewer than HOLDOUT_MIN samples (then the fit samples are all there is)."""
    if calib.n < HOLDOUT_MIN:
        return calib, None
    return calib.split(0.25, seed=0)


def better(a: FidelityReport, b: FidelityReport) -> bool:
    """True when `a` is closer to the reference than `b`. A difference in the deciding metric smaller than the
    data can resolve (one standard error of the difference) is a tie, broken by the continuous distance: a
    candidate is never picked on noise."""
    resolvable = ((a.ci95 / 1.96) ** 2 + (b.ci95 / 1.96) ** 2) ** 0.5
    if abs(a.drop - b.drop) > max(resolvable, 1e-9):
        return a.drop < b.drop
    return a.continuous < b.continuous


# -------------------------------------------------------------------------------------------------- state
_NORM = re.compile(r"[^a-z0-9]")


def _related(inp: str, out: str) -> bool:
    a, b = _NORM.sub("", inp.lower()), _NORM.sub("", out.lower())
    if not a or a == b:
        return False
    if b.startswith(a) and len(b) - len(a) <= 4:
        return True
    swaps = (("in", "out"), ("0", "n"), ("prev", "next"), ("past", "present"), ("old", "new"))
    return any(a.replace(x, y) == b for x, y in swaps)


def detect_state(inputs: Sequence[Any], outputs: Sequence[Any]) -> tuple[tuple[str, str], ...]:
    """Input/output pairs of a stateful model: same dtype and static shape, names related (h -> hn,
    state -> stateN, h_in -> h_out). `inputs`/`outputs` are TensorSpecs."""
    pairs = []
    used: set[str] = set()
    for i in inputs:
        if not i.shape or not all(isinstance(d, int) for d in i.shape):
            continue
        for o in outputs:
            if o.name in used or o.dtype != i.dtype or tuple(o.shape) != tuple(i.shape):
                continue
            if _related(i.name, o.name):
                pairs.append((i.name, o.name))
                used.add(o.name)
                break
    return tuple(pairs)


# -------------------------------------------------------------------------------------------------- running
def _session(model: Model, threads: int, origin: str):
    if hasattr(model, "run") and hasattr(model, "get_outputs"):
        return model
    from ..onnxgraph.runtime import make_session

    if not isinstance(model, bytes) and not hasattr(model, "graph"):  # a path (a ModelProto goes as it is)
        model = str(os.fspath(model))
    return make_session(model, threads=threads, origin=origin)


def run_outputs(model: Model, data: Iterable[Feed], *, state: Sequence[tuple[str, str]] = (), threads: int = 1,
                origin: str = "model", tick: Callable[[int], None] | None = None) -> Outputs:
    """Every output of `model` on every feed, in closed loop for `state` pairs: from the second feed on, each
    state input is the model's own previous state output (as on a device)."""
    from ..errors import RuntimeFailure

    sess = _session(model, threads, origin)
    names = [o.name for o in sess.get_outputs()]
    outs: Outputs = {n: [] for n in names}
    prev: dict[str, np.ndarray] = {}
    for k, feed in enumerate(data):
        if prev:
            feed = {**feed, **{i: prev[i] for i, _ in state}}
        try:
            res = sess.run(names, feed)
        except Exception as exc:  # ORT raises its own Fail/InvalidArgument types
            text = " ".join(str(exc).split())
            raise RuntimeFailure(f"ONNX Runtime failed on sample {k} of {origin}: {text[:400]}") from None
        for n, r in zip(names, res, strict=True):
            outs[n].append(np.asarray(r))
        prev = {i: np.asarray(outs[o][-1]) for i, o in state}
        if tick is not None:
            tick(1)
    return outs


def resolve_state(config: CompareConfig, model: Model, threads: int = 1) -> tuple[tuple[str, str], ...]:
    """The state pairs: the configured ones (checked against the model), else detected from its signature."""
    from ..errors import ConfigError

    pairs = config.state_pairs
    if pairs == ():
        return ()
    sess = _session(model, threads, "model")
    ins = [_Sig(i.name, tuple(i.shape), i.type) for i in sess.get_inputs()]
    outs = [_Sig(o.name, tuple(o.shape), o.type) for o in sess.get_outputs()]
    if pairs is None:
        return detect_state(ins, outs)
    in_names, out_names = {i.name for i in ins}, {o.name for o in outs}
    for a, b in pairs:
        if a not in in_names or b not in out_names:
            raise ConfigError(f"state {a}={b}: the model has inputs {sorted(in_names)} and outputs "
                              f"{sorted(out_names)}")
    return pairs


@dataclass(frozen=True)
class _Sig:
    name: str
    shape: tuple[Any, ...]
    dtype: str


def judge(ref: Outputs, got: Outputs, config: CompareConfig | None = None, *, labels: np.ndarray | None = None,
          state: tuple[tuple[str, str], ...] = (), notes: Sequence[str] = ()) -> FidelityReport:
    """Compare per-output results that were already computed (names matched; missing outputs are broken)."""
    cfg = config or CompareConfig()
    spec: DetectionSpec | None = cfg.detection_spec
    if cfg.metric == "accuracy" and labels is None:
        raise DataError("metric accuracy needs labels in the evaluation data (key 'labels'), found none",
                        hint="add labels or use --metric top1 (agreement with the reference)")
    state_outs = {o for _, o in state}
    results: list[OutputFidelity] = []
    lab = labels
    for name, r in ref.items():
        if name in state_outs:
            continue  # judged through the outputs it feeds (closed loop)
        if name not in got:
            results.append(OutputFidelity(name, "broken", "missing", 1.0, 0.0, len(r), {}, notes=(
                "the candidate has no output of this name",)))
            continue
        o = tensor_metrics(name, r, got[name], metric=cfg.metric, labels=lab, threshold=cfg.threshold)
        if "accuracy" in o.metrics:
            lab = None  # labels belong to the first class-score output
        results.append(o)
    det = None
    if spec is not None:
        det = detection_fidelity(ref, got, spec)
        names = set(detection_outputs(spec))
        results = [o.with_primary("detection_recall", 1.0 - det.recall, det.ci95, detection_recall=det.recall)
                   if o.name in names and o.kind != "broken" else o for o in results]
    n = len(next(iter(ref.values()))) if ref else 0
    return FidelityReport(tuple(results), n, det, tuple(state), tuple(notes))


def compare_models(reference: Model, candidate: Model, data: FeedData | Sequence[Feed] | str | os.PathLike[str],
                   config: CompareConfig | None = None, *, threads: int = 1, labels: np.ndarray | None = None,
                   reference_outputs: Outputs | None = None) -> FidelityReport:
    """Run both models on `data` and compare every output. `reference_outputs` skips re-running the reference
    (the stages run it once and compare many candidates)."""
    cfg = config or CompareConfig()
    if isinstance(data, (str, os.PathLike)):
        from ..data import load_data

        data = load_data(os.fspath(data), what="comparison data")
    ref_sess = _session(reference, threads, "reference model")
    state = resolve_state(cfg, ref_sess)
    if labels is None and isinstance(data, FeedData):
        labels = data.labels
    ref = reference_outputs if reference_outputs is not None else run_outputs(
        ref_sess, data, state=state, origin="reference model")
    got = run_outputs(candidate, data, state=state, threads=threads, origin="candidate model")
    notes = [f"closed loop: {a} <- {b}" for a, b in state]
    return judge(ref, got, cfg, labels=labels, state=state, notes=notes)
