"""Matched-detection recall: how many of the reference's detections (score >= threshold) the candidate finds
again (same class, IoU >= iou, one-to-one, greedy by reference score), and how many of its own it matches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .config import DetectionSpec, OutputRef
from .metrics import _mean_ci, channel_axis

MAX_PER_SAMPLE = 1000  # highest-scoring detections kept per sample and class pass


@dataclass(frozen=True)
class DetectionFidelity:
    recall: float
    precision: float
    ci95: float
    reference_detections: int
    candidate_detections: int
    matched: int
    spec: str

    def to_dict(self) -> dict[str, Any]:
        return {"recall": round(self.recall, 6), "precision": round(self.precision, 6), "ci95": round(self.ci95, 6),
                "reference_detections": self.reference_detections,
                "candidate_detections": self.candidate_detections, "matched": self.matched, "spec": self.spec}


def _select(outputs: dict[str, list[np.ndarray]], ref: OutputRef, k: int) -> np.ndarray:
    arrays = outputs[ref.name]
    a = np.asarray(arrays[k], dtype=np.float64)
    if not ref.sliced:
        return a
    ax = channel_axis([tuple(np.shape(x)) for x in arrays])
    if ax is None:
        raise ConfigError(f"detection: output {ref.name!r} has no channel axis to slice ({list(a.shape)})")
    return np.take(a, np.arange(a.shape[ax])[slice(ref.start, ref.stop)], axis=ax)


def _boxes_scores(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None,
                  spec: DetectionSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [N, 4] xyxy, scores [N], class ids [N]) of one sample's detections above the threshold."""
    if spec.box_format == "offsets":
        boxes, scores = _decode_offsets(boxes, scores, spec)
    b = np.squeeze(boxes)
    if b.ndim == 1 and b.size == 4:
        b = b.reshape(1, 4)
    if b.ndim != 2 or 4 not in b.shape:
        raise ConfigError(f"detection boxes must be [N, 4] per sample (after dropping unit axes), got "
                          f"{list(boxes.shape)}", hint="slice a combined output, e.g. boxes=NAME[0:4]")
    if b.shape[1] != 4:
        b = b.T
    n = b.shape[0]
    s = np.squeeze(scores)
    if s.ndim == 0:
        s = s.reshape(1)
    if s.ndim == 1:
        if s.shape[0] != n:
            raise ConfigError(f"detection scores hold {s.shape[0]} values for {n} boxes")
        cls = np.zeros(n, dtype=np.int64) if classes is None else np.squeeze(classes).reshape(-1).astype(np.int64)
        s2, c2 = s, cls
    else:
        if s.ndim != 2 or n not in s.shape:
            raise ConfigError(f"detection scores must be [N] or [N, classes] per sample for {n} boxes, got "
                              f"{list(scores.shape)}")
        if s.shape[0] != n:
            s = s.T
        idx_n, idx_c = np.nonzero(s >= spec.score_threshold)
        b = b[idx_n]
        s2, c2 = s[idx_n, idx_c], idx_c.astype(np.int64)
        keep = np.argsort(-s2, kind="stable")[:MAX_PER_SAMPLE]
        return _xyxy(b[keep], spec.box_format), s2[keep], c2[keep]
    keep = np.nonzero(s2 >= spec.score_threshold)[0]
    keep = keep[np.argsort(-s2[keep], kind="stable")][:MAX_PER_SAMPLE]
    return _xyxy(b[keep], spec.box_format), s2[keep], c2[keep]


def _decode_offsets(boxes: np.ndarray, scores: np.ndarray, spec: DetectionSpec) -> tuple[np.ndarray, np.ndarray]:
    """Window offsets -> xyxy boxes: a [4, H, W] map holds one window per cell (cell (r, c) at (c, r) * stride,
    side `window`), a [.., 4] array one window at the origin per row; box = window + window * offsets."""
    b = boxes[0] if boxes.ndim > 2 and boxes.shape[0] == 1 else boxes  # the batch axis of one sample
    w = spec.window
    if b.ndim == 3 and b.shape[0] == 4:
        h, wd = b.shape[1:]
        rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(wd, dtype=np.float64), indexing="ij")
        x0, y0 = (cols * spec.stride).reshape(-1), (rows * spec.stride).reshape(-1)
        off = b.reshape(4, -1).T
        s = scores[0] if scores.ndim > 2 and scores.shape[0] == 1 else scores
        s = s.reshape(-1) if s.size == h * wd else s
        if s.size != h * wd:
            raise ConfigError(f"detection scores must hold one value per cell of the {h}x{wd} box map, got "
                              f"{list(scores.shape)}", hint="slice the class channel, e.g. scores=prob[1:2]")
    else:
        off = b.reshape(-1, 4)
        x0 = y0 = np.zeros(len(off))
        s = scores
    window = np.stack([x0, y0, x0 + w, y0 + w], 1)
    return window + w * off, s


def _xyxy(b: np.ndarray, fmt: str) -> np.ndarray:
    if fmt in ("xyxy", "offsets"):
        return b
    if fmt == "yxyx":
        return b[:, [1, 0, 3, 2]]
    if fmt == "xywh":
        return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match(rb: np.ndarray, rc: np.ndarray, gb: np.ndarray, gc: np.ndarray, iou: float) -> np.ndarray:
    """For each reference detection (already sorted by score), whether a candidate detection matches it."""
    hit = np.zeros(len(rb), dtype=bool)
    if not len(rb) or not len(gb):
        return hit
    m = iou_matrix(rb, gb)
    m[rc[:, None] != gc[None, :]] = -1
    used = np.zeros(len(gb), dtype=bool)
    for i in range(len(rb)):
        row = np.where(used, -1, m[i])
        j = int(np.argmax(row))
        if row[j] >= iou:
            hit[i] = used[j] = True
    return hit


def detection_fidelity(ref: dict[str, list[np.ndarray]], got: dict[str, list[np.ndarray]],
                       spec: DetectionSpec) -> DetectionFidelity:
    """Matched-detection recall of `got` against `ref` (per-output lists of per-sample arrays)."""
    for r in (spec.boxes, spec.scores) + ((spec.classes,) if spec.classes else ()):
        if r.name not in ref:
            raise ConfigError(f"detection: the model has no output {r.name!r} (outputs: {', '.join(ref)})")
    n = len(ref[spec.boxes.name])
    per_sample: list[float] = []
    total_r = total_g = matched = 0
    for k in range(n):
        sides = []
        for outs in (ref, got):
            classes = _select(outs, spec.classes, k) if spec.classes else None
            sides.append(_boxes_scores(_select(outs, spec.boxes, k), _select(outs, spec.scores, k), classes, spec))
        (rb, _, rc), (gb, _, gc) = sides
        hit = _match(rb, rc, gb, gc, spec.iou)
        total_r += len(rb)
        total_g += len(gb)
        matched += int(hit.sum())
        per_sample.extend(hit.astype(np.float64).tolist())
    recall = matched / total_r if total_r else 1.0
    precision = matched / total_g if total_g else (1.0 if not total_r else 0.0)
    _, ci = _mean_ci(np.asarray(per_sample)) if per_sample else (1.0, 1.0)
    return DetectionFidelity(recall, precision, ci, total_r, total_g, matched, str(spec))


def detection_outputs(spec: DetectionSpec) -> Sequence[str]:
    return [r.name for r in (spec.boxes, spec.scores, spec.classes) if r is not None]
