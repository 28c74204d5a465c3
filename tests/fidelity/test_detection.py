"""Matched-detection recall and the --detection spec."""

from __future__ import annotations

import numpy as np
import pytest

from edgecompress.errors import ConfigError
from edgecompress.fidelity import CompareConfig, DetectionSpec, judge
from edgecompress.fidelity.detection import detection_fidelity, iou_matrix

rng = np.random.default_rng(1)


def _sample(n: int = 20, classes: int = 3) -> dict[str, np.ndarray]:
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(20, 60, (n, 2))
    scores = np.zeros((n, classes))
    scores[np.arange(n), rng.integers(classes, size=n)] = rng.uniform(0.3, 1.0, n)
    # one combined output [1, n, 4 + classes]: boxes (pixels) beside class scores (0-1)
    return {"out": np.concatenate([xy, xy + wh, scores], 1)[None]}


def test_spec_parse_and_errors():
    s = DetectionSpec.parse("boxes=out[0:4],scores=out[4:],format=xyxy,threshold=0.25,iou=0.6")
    assert (s.boxes.name, s.boxes.start, s.boxes.stop) == ("out", 0, 4) and s.scores.start == 4
    assert s.score_threshold == 0.25 and s.iou == 0.6 and DetectionSpec.parse(str(s)) == s
    for bad, what in (("boxes=a", "scores"), ("boxes=a,scores=b,format=polar", "format"),
                      ("boxes=a,scores=b,threshold=2", "threshold"), ("boxes=a,scores=b,nms=1", "unknown key"),
                      ("boxes=a,scores=b,window=0", "window")):
        with pytest.raises(ConfigError, match=what):
            DetectionSpec.parse(bad)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])


def test_recall_sees_lost_and_moved_detections():
    ref = {"out": [_sample() for _ in range(10)]}
    ref = {"out": [r["out"] for r in ref["out"]]}
    got = {"out": [r.copy() for r in ref["out"]]}
    spec = DetectionSpec.parse("boxes=out[0:4],scores=out[4:],threshold=0.5")
    same = detection_fidelity(ref, got, spec)
    assert same.recall == 1.0 and same.precision == 1.0 and same.reference_detections > 0
    for g in got["out"]:
        g[0, ::2, 4:] = 0.0  # every other detection's score collapses
        g[0, 1::4, 0:4] += 100.0  # a quarter of the boxes move far
    det = detection_fidelity(ref, got, spec)
    assert 0.1 < det.recall < 0.6 and det.matched < det.reference_detections
    rep = judge(ref, got, CompareConfig(detection=str(spec)))
    assert rep.output("out").primary == "detection_recall"
    assert rep.drop == pytest.approx(1 - det.recall) and rep.detection.recall == det.recall


def test_offsets_on_a_window_grid():
    """A proposal map: [1, 4, H, W] window offsets and a [1, 2, H, W] softmax; one window per cell."""
    h = w = 6
    reg = rng.normal(0, 0.05, (1, 4, h, w))
    face = rng.uniform(0, 1, (h, w))
    prob = np.stack([1 - face, face])[None]
    ref = {"reg": [reg], "prob": [prob]}
    spec = DetectionSpec.parse("boxes=reg,scores=prob[1:2],format=offsets,stride=2,window=12,threshold=0.6")
    assert detection_fidelity(ref, {"reg": [reg.copy()], "prob": [prob.copy()]}, spec).recall == 1.0
    shifted = reg.copy()
    shifted[0, [0, 2]] += 0.5  # every window moves by half its side: IoU 1/3
    det = detection_fidelity(ref, {"reg": [shifted], "prob": [prob]}, spec)
    assert det.reference_detections == int((face >= 0.6).sum()) and det.recall < 0.5
