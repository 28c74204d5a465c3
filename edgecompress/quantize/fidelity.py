"""How close int8 is to fp32: top1 (argmax agreement, or accuracy against labels), accuracy, cosine, mse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class Fidelity:
    metric: str  # top1 | accuracy | cosine | mse
    against: str  # "labels" or "fp32"
    fp32: float  # the fp32 model's value (1.0 when measured against fp32 itself; 0.0 for mse)
    int8: float
    drop: float  # relative drop (>= 0 worse): (fp32 - int8) / fp32, or 1 - cosine, or normalised mse
    samples: int
    cosine: float  # mean per-sample cosine of the first output, always reported

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def meets(self, max_drop: float) -> bool:
        return self.drop <= max_drop + 1e-12


def _flat(outs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(o, dtype=np.float64).reshape(1, -1) for o in outs])


def _is_scores(outs: list[np.ndarray]) -> bool:
    o = np.asarray(outs[0])
    return o.ndim == 2 and o.shape[0] == 1 and o.shape[1] > 1


def resolve_metric(metric: str, ref_first: list[np.ndarray], labels: np.ndarray | None) -> tuple[str, str]:
    """(metric, against) for the requested metric, given fp32 outputs of the first output and the labels."""
    scores = _is_scores(ref_first)
    has_labels = labels is not None and len(labels) == len(ref_first)
    if metric == "auto":  # top1 where labels say what is right; else cosine (argmax of near-ties is noise)
        metric = "top1" if scores and has_labels else "cosine"
    if metric in ("top1", "accuracy") and not scores:
        raise ConfigError(f"metric {metric} needs class scores (output of shape [1, classes]); "
                          f"the model's first output has shape {list(np.asarray(ref_first[0]).shape)}",
                          hint="use --metric cosine or --metric mse")
    if metric == "accuracy" and not has_labels:
        raise DataError("metric accuracy needs labels in the evaluation data (key 'labels'), found none",
                        hint="add labels or use --metric top1 (agreement with fp32)")
    against = "labels" if metric in ("top1", "accuracy") and has_labels else "fp32"
    return metric, against


def score(metric: str, against: str, ref: list[np.ndarray], got: list[np.ndarray],
          labels: np.ndarray | None) -> Fidelity:
    r, g = _flat(ref), _flat(got)
    n = len(r)
    num = (r * g).sum(1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    cos = float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)))
    if metric in ("top1", "accuracy"):
        if against == "labels":
            lab = np.asarray(labels).reshape(-1)[:n]
            a32 = float((r.argmax(1) == lab).mean())
            a8 = float((g.argmax(1) == lab).mean())
            drop = (a32 - a8) / a32 if a32 > 0 else (0.0 if a8 >= a32 else 1.0)
            return Fidelity(metric, against, a32, a8, drop, n, cos)
        agree = float((r.argmax(1) == g.argmax(1)).mean())
        return Fidelity(metric, against, 1.0, agree, 1.0 - agree, n, cos)
    if metric == "cosine":
        return Fidelity(metric, against, 1.0, cos, 1.0 - cos, n, cos)
    power = float(np.mean(r * r)) or 1.0
    nmse = float(np.mean((r - g) ** 2)) / power
    return Fidelity("mse", against, 0.0, nmse, nmse, n, cos)


def better(a: Fidelity, b: Fidelity) -> bool:
    """True when `a` is closer to fp32 than `b` (ties broken by cosine)."""
    if abs(a.drop - b.drop) > 1e-9:
        return a.drop < b.drop
    return a.cosine > b.cosine
