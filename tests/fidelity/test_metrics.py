"""Per-output metrics: each output kind is judged by a metric that can see damage on its shape."""

from __future__ import annotations

import numpy as np
import pytest

from edgecompress.fidelity.metrics import channel_axis, looks_like_scores, tensor_metrics

rng = np.random.default_rng(0)


def _logits(n: int, c: int = 10) -> list[np.ndarray]:
    return [rng.normal(0, 1, (1, c)) + 4 * np.eye(c)[rng.integers(c)] for _ in range(n)]


def test_class_scores_top1_top5_and_accuracy():
    ref = _logits(200)
    got = [r.copy() for r in ref]
    for g in got[:20]:  # flip the winner of 10 % of the samples
        g[0, np.argmax(g)] -= 100
    labels = np.array([int(np.argmax(r)) for r in ref])
    o = tensor_metrics("logits", ref, got)
    assert o.kind == "scores" and o.primary == "top1_agreement"
    assert o.metrics["top1_agreement"] == pytest.approx(0.9) and o.drop == pytest.approx(0.1)
    assert o.metrics["top5_containment"] == pytest.approx(0.9)  # the winner fell out of the top 5 as well
    assert 0 < o.ci95 < 0.1  # a Wilson interval over 200 samples
    o = tensor_metrics("logits", ref, got, labels=labels)
    assert o.primary == "accuracy" and o.metrics["accuracy_reference"] == 1.0
    assert o.metrics["accuracy"] == pytest.approx(0.9) and o.drop == pytest.approx(0.1)


def test_identical_outputs_have_no_drop():
    ref = _logits(30)
    o = tensor_metrics("logits", ref, [r.copy() for r in ref])
    assert o.drop == 0 and o.metrics["sqnr_db"] == np.inf and o.metrics["max_abs"] == 0


def test_scalar_probability_is_judged_by_decisions_not_cosine():
    """A [1, 1] output: the cosine of one element is always 1; decision agreement sees the flips."""
    p = rng.uniform(0, 1, 400)
    ref = [np.array([[v]], np.float32) for v in p]
    got = [np.array([[min(1.0, v + 0.2)]], np.float32) for v in p]  # pushes 0.3..0.5 over the threshold
    o = tensor_metrics("prob", ref, got)
    assert o.kind == "probability" and o.primary == "decision_agreement"
    assert o.metrics["cosine"] == pytest.approx(1.0)
    flipped = float(np.mean((p >= 0.5) != (np.minimum(1, p + 0.2) >= 0.5)))
    assert o.drop == pytest.approx(flipped) and o.drop > 0.15
    assert o.metrics["abs_error_mean"] == pytest.approx(0.2, abs=0.02)


def test_mixed_scales_in_one_tensor_are_balanced_per_channel():
    """Box coordinates (0-320) beside scores (0-1) on the last axis: the scores collapse, the plain cosine does
    not notice, the balanced cosine and the per-slice minimum do."""
    ref, got = [], []
    for _ in range(50):
        boxes, scores = rng.uniform(0, 320, (1, 100, 4)), rng.uniform(0, 1, (1, 100, 2))
        ref.append(np.concatenate([boxes, scores], -1))
        got.append(np.concatenate([boxes, np.zeros_like(scores)], -1))
    o = tensor_metrics("det", ref, got)
    assert o.kind == "tensor" and o.channel_axis == 2
    assert o.metrics["cosine"] > 0.999
    assert o.metrics["balanced_cosine"] < 0.95 and o.drop > 0.05
    assert o.metrics["slice_cosine_min"] < 0.9


def test_integer_outputs_exact_agreement():
    ref = [np.arange(6, dtype=np.int64).reshape(1, 6) for _ in range(10)]
    got = [r.copy() for r in ref]
    got[3][0, 2] = 99
    o = tensor_metrics("ids", ref, got)
    assert o.kind == "integer" and o.metrics["exact_agreement"] == pytest.approx(0.9)


@pytest.mark.parametrize("bad", ["nan", "shape"])
def test_broken_outputs_drop_everything(bad):
    ref = [rng.normal(size=(1, 8)) for _ in range(5)]
    got = [r.copy() for r in ref]
    if bad == "nan":
        got[2][0, 0] = np.nan
    else:
        got = [g[:, :4] for g in got]
    o = tensor_metrics("out", ref, got)
    assert o.kind == "broken" and o.drop == 1.0 and o.notes


def test_mse_metric_and_channel_axis():
    ref = [rng.normal(size=(1, 3, 8, 8)) for _ in range(10)]
    got = [r + rng.normal(0, 0.1, r.shape) for r in ref]
    o = tensor_metrics("map", ref, got, metric="mse")
    assert o.primary == "nmse" and o.drop == pytest.approx(0.01, rel=0.3)
    assert channel_axis([(1, 3, 8, 8)]) == 1 and channel_axis([(1, 7, 4)]) == 2 and channel_axis([(1,)]) is None
    assert channel_axis([(1, 5, 9), (1, 6, 9)]) == 2  # axis 1 varies between samples


def test_looks_like_scores():
    assert looks_like_scores(np.stack([r[0] for r in _logits(20)]), None)
    flat = rng.normal(0, 0.01, (20, 384))  # an embedding: no peaked softmax
    assert not looks_like_scores(flat, None)
    assert looks_like_scores(flat, np.arange(20) % 384)  # labels in range say they are scores


def test_label_accuracy_is_the_first_class_score_output():
    from edgecompress.fidelity import judge, label_accuracy

    emb = [rng.normal(size=(1, 32)) for _ in range(50)]  # labels are in its range too: order decides
    logits = _logits(50)
    labels = np.array([int(np.argmax(r)) for r in logits])
    labels[:5] = (labels[:5] + 1) % 10  # 90 % right
    outs = {"ids": [np.arange(3)[None] for _ in range(50)], "logits": logits, "emb": emb}
    assert label_accuracy(outs, labels) == pytest.approx(0.9)
    assert label_accuracy(outs, labels) == judge(outs, outs, labels=labels).headline()["accuracy"]
    assert label_accuracy({"emb": [e[:, :1] for e in emb]}, labels) is None and label_accuracy(outs, None) is None
