"""Checks run on the prepared zoo: every split validated against its model and run in ONNX Runtime (fp32),
plus the decoders the sanity checks need (PicoDet boxes for the layout detector, closed-loop state feeding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecompress.fidelity.detection import iou_matrix

from .store import ZooError


def session(path: Path, threads: int = 1) -> Any:
    from edgecompress.onnxgraph.runtime import make_session

    return make_session(str(path), threads=threads, origin=Path(path).name)


def run_feeds(sess: Any, feeds: Sequence[dict[str, np.ndarray]] | Any,
              state: Sequence[tuple[str, str]] = ()) -> list[dict[str, np.ndarray]]:
    """Outputs of every feed, in order (one dict per feed), in closed loop for `state` pairs: the comparison
    module's run_outputs, regrouped per feed."""
    from edgecompress.fidelity import run_outputs

    outs = run_outputs(sess, feeds, state=tuple(state))
    return [dict(zip(outs, values, strict=True)) for values in zip(*outs.values(), strict=True)]


@dataclass(frozen=True)
class SplitCheck:
    split: str
    samples: int
    seconds: float
    finite: bool
    notes: tuple[str, ...]


def check_split(model_path: Path, split: str, data_path: Path, state: Sequence[tuple[str, str]] = ()) -> SplitCheck:
    """load_data(...).validated(input_specs(model)) then run every feed in ORT; outputs must be finite."""
    import onnx

    from edgecompress.data import load_data
    from edgecompress.onnxgraph.io import input_specs

    proto = onnx.load(str(model_path), load_external_data=False)
    data = load_data(data_path, what=f"{split} data").validated(input_specs(proto), what=f"{split} data")
    sess = session(model_path)
    t0 = time.perf_counter()
    outs = run_feeds(sess, data, state)
    dt = time.perf_counter() - t0
    finite = all(np.isfinite(v).all() for o in outs for v in o.values() if v.dtype.kind == "f")
    if len(outs) != data.n:
        raise ZooError(f"{model_path.name} {split}: ran {len(outs)} feeds of {data.n}")
    return SplitCheck(split, data.n, dt, finite, tuple(data.notes))


# PicoDet decoding (rapid-layout's PPPostProcess, re-derived) ------------------------------------------------

def picodet_decode(score_maps: Sequence[np.ndarray], box_maps: Sequence[np.ndarray], strides: Sequence[int],
                   input_hw: tuple[int, int], score_threshold: float, iou_threshold: float = 0.5,
                   top_k: int = 1000) -> list[tuple[int, float, np.ndarray]]:
    """(class, score, xyxy box in input pixels) after per-class hard NMS, for one image (batch index 0).

    score_maps[l]: [1, A_l, C] per-class probabilities (sigmoid applied in the graph); box_maps[l]: [1, A_l, 4*(R+1)]
    logits of a discrete distribution over distances 0..R (in strides) to the left, top, right, bottom edges from
    the anchor point ((col+0.5)*stride, (row+0.5)*stride), rows of the feature map in row-major order.
    """
    boxes, scores = [], []
    for s_map, b_map, stride in zip(score_maps, box_maps, strides, strict=True):
        sc, dist = s_map[0], b_map[0]
        reg_max = dist.shape[-1] // 4 - 1
        fh, fw = int(np.ceil(input_hw[0] / stride)), int(np.ceil(input_hw[1] / stride))
        if fh * fw != sc.shape[0]:
            raise ZooError(f"stride {stride}: {sc.shape[0]} anchors, expected {fh}x{fw} for input {input_hw}")
        yy, xx = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx, cy = (xx.ravel() + 0.5) * stride, (yy.ravel() + 0.5) * stride
        logits = dist.reshape(-1, 4, reg_max + 1)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        d = (p * np.arange(reg_max + 1)).sum(-1) * stride  # [A, 4] l t r b
        order = np.argsort(-sc.max(1))[:top_k]
        b = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)[order]
        boxes.append(b)
        scores.append(sc[order])
    all_b, all_s = np.concatenate(boxes), np.concatenate(scores)
    out: list[tuple[int, float, np.ndarray]] = []
    for c in range(all_s.shape[1]):
        keep = all_s[:, c] > score_threshold
        for i in _nms(all_b[keep], all_s[keep, c], iou_threshold):
            out.append((c, float(all_s[keep, c][i]), all_b[keep][i]))
    return out


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            ious = iou_matrix(boxes[i : i + 1], boxes[order])[0]
            order = [j for j, v in zip(order, ious, strict=True) if v <= threshold]
    return keep


def detection_recall(dets: list[tuple[int, float, np.ndarray]], truth: list[tuple[int, Sequence[float]]],
                     iou_min: float = 0.5) -> tuple[int, int]:
    """(ground-truth boxes matched by a same-class detection at IoU >= iou_min, ground-truth boxes)."""
    hit = 0
    for label, box in truth:
        cand = np.asarray([b for c, _, b in dets if c == label]).reshape(-1, 4)
        if len(cand) and iou_matrix(np.asarray([box], np.float64), cand).max() >= iou_min:
            hit += 1
    return hit, len(truth)
