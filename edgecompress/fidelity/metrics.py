"""Per-output fidelity metrics of a candidate model's outputs against a reference's (numpy only).

Every output is judged by a metric that can see damage on its shape:
* class scores (one axis of C >= 2 that reads as scores): top-1 agreement, top-5 containment, KL; accuracy
  against labels where they exist;
* scalar probabilities ([1, 1] in [0, 1], e.g. a voice-activity or objectness output): the agreement of the
  decisions at a threshold (a cosine of one element is always 1);
* any other float tensor: a *balanced* cosine, each slice along its channel axis (the smallest non-batch axis of
  2 or more; the last on ties) normalised by its own RMS first, so that quantities of different scales mixed in
  one tensor (box coordinates beside class scores) weigh alike; plus per-slice cosine / SQNR minima, SQNR,
  relative and absolute error;
* integer / bool outputs: exact agreement.
Each output's `drop` (0 = identical, 1 = unrelated) is what budgets are checked against; `ci95` is the
half-width of its 95 % interval over the samples (a budget finer than that cannot be resolved by this data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOOTSTRAP = 200


@dataclass(frozen=True)
class OutputFidelity:
    name: str
    kind: str  # scores | probability | tensor | integer | broken
    primary: str  # the metric that sets `drop`
    drop: float
    ci95: float
    samples: int
    metrics: dict[str, float]
    shape: tuple[Any, ...] = ()
    channel_axis: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "primary": self.primary, "drop": _r(self.drop),
                "ci95": _r(self.ci95), "samples": self.samples,
                "metrics": {k: _r(v) for k, v in self.metrics.items()}, "shape": list(self.shape),
                "channel_axis": self.channel_axis, "notes": list(self.notes)}

    def with_primary(self, primary: str, drop: float, ci95: float, **metrics: float) -> OutputFidelity:
        return OutputFidelity(self.name, self.kind, primary, drop, ci95, self.samples, {**self.metrics, **metrics},
                              self.shape, self.channel_axis, self.notes)


def _r(v: Any, nd: int = 6) -> Any:
    if isinstance(v, float):
        return v if not math.isfinite(v) else round(v, nd)
    return v


def channel_axis(shapes: Sequence[tuple[int, ...]]) -> int | None:
    """The axis that holds channels: the smallest non-batch axis of size >= 2, equal in every sample (last on
    ties); None for scalars or when no axis is the same in every sample."""
    if not shapes:
        return None
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        return None
    best: int | None = None
    for ax in range(1 if rank > 1 else 0, rank):
        sizes = {s[ax] for s in shapes}
        if len(sizes) != 1:
            continue
        size = sizes.pop()
        if size >= 2 and (best is None or size <= shapes[0][best]):
            best = ax
    return best


def _rows(arrays: Sequence[np.ndarray], axis: int | None) -> list[np.ndarray]:
    """Each sample as a float64 matrix (positions, channels) with the channel axis last."""
    out = []
    for a in arrays:
        x = np.asarray(a, dtype=np.float64)
        if axis is None:
            out.append(x.reshape(-1, 1) if x.size else x.reshape(0, 1))
        else:
            out.append(np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis]))
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))


def _ratio_ci(num: np.ndarray, den_a: np.ndarray, den_b: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """sum(num) / sqrt(sum(den_a) * sum(den_b)) and the half-width of its bootstrap 95 % interval over samples."""
    def stat(idx: np.ndarray | slice) -> float:
        d = math.sqrt(float(den_a[idx].sum()) * float(den_b[idx].sum()))
        return float(num[idx].sum()) / d if d > 0 else (1.0 if float(den_a[idx].sum()) == 0 else 0.0)

    value = stat(slice(None))
    n = len(num)
    if n < 2:
        return value, 1.0
    rng = np.random.default_rng(seed)
    boots = [stat(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return value, float(hi - lo) / 2


def _mean_ci(x: np.ndarray) -> tuple[float, float]:
    n = len(x)
    m = float(np.mean(x)) if n else 0.0
    if n < 2:
        return m, 1.0
    if np.all((x == 0) | (x == 1)):  # Wilson interval for a proportion
        z = 1.96
        den = 1 + z * z / n
        half = z * math.sqrt(m * (1 - m) / n + z * z / (4 * n * n)) / den
        return m, half
    return m, 1.96 * float(np.std(x, ddof=1)) / math.sqrt(n)


def _probabilities(rows: np.ndarray) -> tuple[np.ndarray, bool]:
    """Rows as probability distributions: as they are when they already are, else softmax."""
    if np.all(rows >= -1e-6) and np.allclose(rows.sum(1), 1.0, atol=1e-3):
        return np.clip(rows, 0, None), True
    z = rows - rows.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True), False


def looks_like_scores(ref: np.ndarray, labels: np.ndarray | None) -> bool:
    """[n, C] rows that read as class scores: labels in range, probability rows, or a peaked softmax."""
    c = ref.shape[1]
    if c < 2:
        return False
    if _label_ids(labels, len(ref), c) is not None:
        return True
    p, already = _probabilities(ref)
    return already or float(p.max(1).mean()) >= max(2.0 / c, 0.1)


def _vectors(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """Per-sample arrays of one float output as [n, C] rows when each is a vector (one non-unit axis, C >= 2)."""
    shape0 = tuple(np.shape(arrays[0])) if len(arrays) else ()
    if not shape0 or int(np.prod(shape0)) < 2 or sum(1 for d in shape0 if d != 1) != 1:
        return None
    if any(tuple(np.shape(a)) != shape0 for a in arrays):
        return None
    return np.stack([np.asarray(a, np.float64).reshape(-1) for a in arrays])


def _label_ids(labels: np.ndarray | None, n: int, classes: int) -> np.ndarray | None:
    """Integer class ids of `labels` when there is one per sample and all are in [0, classes)."""
    if labels is None or len(labels) != n:
        return None
    lab = np.asarray(labels).reshape(n, -1)[:, 0]
    if np.issubdtype(lab.dtype, np.integer) and lab.min() >= 0 and lab.max() < classes:
        return lab
    return None


def label_accuracy(outputs: dict[str, list[np.ndarray]], labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy against `labels` of the first output that holds class scores for them (None: none does)."""
    if labels is None:
        return None
    for arrays in outputs.values():
        if not arrays or not np.issubdtype(np.asarray(arrays[0]).dtype, np.floating):
            continue
        rows = _vectors(arrays)
        if rows is None:
            continue
        lab = _label_ids(labels, len(rows), rows.shape[1])
        if lab is not None:
            return float((rows.argmax(1) == lab).mean())
    return None


def _class_metrics(r: np.ndarray, g: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    agree = (r.argmax(1) == g.argmax(1)).astype(np.float64)
    m = {"top1_agreement": float(agree.mean())}
    if r.shape[1] > 5:
        top5 = np.argsort(-g, axis=1)[:, :5]
        m["top5_containment"] = float((top5 == r.argmax(1)[:, None]).any(1).mean())
    pr, _ = _probabilities(r)
    pg, _ = _probabilities(g)
    kl = np.sum(pr * (np.log(np.maximum(pr, 1e-12)) - np.log(np.maximum(pg, 1e-12))), axis=1)
    m["kl"] = float(np.mean(kl))
    return m, agree


def tensor_metrics(name: str, ref: Sequence[np.ndarray], got: Sequence[np.ndarray], *, metric: str = "auto",
                   labels: np.ndarray | None = None, threshold: float = 0.5) -> OutputFidelity:
    """The fidelity of one output (per-sample arrays of the reference and the candidate)."""
    n = len(ref)
    shapes = [tuple(np.shape(a)) for a in ref]
    if len(got) != n or any(np.shape(g) != s for g, s in zip(got, shapes, strict=False)):
        gs = sorted({str(list(np.shape(g))) for g in got})[:3]
        return OutputFidelity(name, "broken", "shape", 1.0, 0.0, n, {}, shapes[0] if shapes else (), None,
                              (f"shapes differ: reference {list(shapes[0]) if shapes else []}, candidate "
                               f"{', '.join(gs)}",))
    shape0 = shapes[0] if shapes else ()
    if n == 0:
        return OutputFidelity(name, "tensor", "none", 0.0, 1.0, 0, {}, shape0)
    if not all(np.issubdtype(np.asarray(a).dtype, np.floating) for a in ref):
        eq = np.asarray([float(np.array_equal(a, b)) for a, b in zip(ref, got, strict=True)])
        exact, exact_ci = _mean_ci(eq)
        return OutputFidelity(name, "integer", "exact_agreement", 1.0 - exact, exact_ci, n,
                              {"exact_agreement": exact}, shape0)
    if not all(np.isfinite(np.asarray(g, dtype=np.float64)).all() for g in got):
        return OutputFidelity(name, "broken", "finite", 1.0, 0.0, n, {}, shape0, None,
                              ("the candidate produces NaN/Inf",))
    axis = channel_axis(shapes)
    R, G = _rows(ref, axis), _rows(got, axis)
    allr, allg = np.concatenate(R), np.concatenate(G)
    sigma = np.sqrt(np.mean(allr * allr, axis=0)) if len(allr) else np.ones(allr.shape[1])
    sigma = np.maximum(sigma, 1e-12 + 1e-6 * float(sigma.max(initial=0.0)))
    dots = np.asarray([float(((r / sigma) * (g / sigma)).sum()) for r, g in zip(R, G, strict=True)])
    nr = np.asarray([float(((r / sigma) ** 2).sum()) for r in R])
    ng = np.asarray([float(((g / sigma) ** 2).sum()) for g in G])
    bal, bal_ci = _ratio_ci(dots, nr, ng)
    err = allr - allg
    power, noise = float((allr * allr).sum()), float((err * err).sum())
    slice_cos = [_cos(allr[:, j], allg[:, j]) for j in range(allr.shape[1])]
    slice_pow = (allr * allr).sum(0)
    slice_noise = (err * err).sum(0)
    slice_sqnr = [10 * math.log10(p / e) if e > 0 and p > 0 else math.inf for p, e in zip(slice_pow, slice_noise,
                                                                                           strict=True)]
    m: dict[str, float] = {
        "balanced_cosine": bal,
        "cosine": float(np.mean([_cos(np.asarray(a, np.float64), np.asarray(b, np.float64))
                                 for a, b in zip(ref, got, strict=True)])),
        "sqnr_db": 10 * math.log10(power / noise) if noise > 0 and power > 0 else math.inf,
        "rel_error": math.sqrt(noise / power) if power > 0 else (0.0 if noise == 0 else math.inf),
        "max_abs": float(np.abs(err).max(initial=0.0)),
        "scale": float(np.abs(allr).max(initial=0.0)),
    }
    if allr.shape[1] > 1:
        m["slice_cosine_min"] = float(min(slice_cos))
        m["slice_sqnr_db_min"] = float(min(slice_sqnr))
    nmse = float(np.mean(slice_noise / np.maximum(slice_pow, 1e-30)))
    m["nmse"] = nmse
    kind, primary, drop, ci = "tensor", "balanced_cosine", 1.0 - bal, bal_ci
    if metric == "mse":
        primary, drop = "nmse", nmse
    per_sample = int(np.prod(shape0)) if shape0 else 1
    rv = _vectors(ref)
    if rv is not None and metric in ("auto", "top1", "accuracy") and (metric != "auto" or looks_like_scores(rv, labels)):
        gv = np.stack([np.asarray(a, np.float64).reshape(-1) for a in got])
        cm, agree = _class_metrics(rv, gv)
        m.update(cm)
        kind, primary = "scores", "top1_agreement"
        drop_v, ci = _mean_ci(agree)
        drop = 1.0 - drop_v
        lab = _label_ids(labels, n, rv.shape[1])
        if lab is not None:
            a_ref, a_got = float((rv.argmax(1) == lab).mean()), float((gv.argmax(1) == lab).mean())
            m.update(accuracy_reference=a_ref, accuracy=a_got)
            if metric in ("auto", "accuracy"):
                primary = "accuracy"
                drop = (a_ref - a_got) / a_ref if a_ref > 0 else (0.0 if a_got >= a_ref else 1.0)
    elif per_sample == 1 and metric == "auto" and float(allr.min()) >= 0 and float(allr.max()) <= 1:
        dec = ((allr[:, 0] >= threshold) == (allg[:, 0] >= threshold)).astype(np.float64)
        agree_v, ci = _mean_ci(dec)
        m.update(decision_agreement=agree_v, abs_error_mean=float(np.abs(err).mean()))
        kind, primary, drop = "probability", "decision_agreement", 1.0 - agree_v
    return OutputFidelity(name, kind, primary, float(drop), float(ci), n, m, shape0, axis)
