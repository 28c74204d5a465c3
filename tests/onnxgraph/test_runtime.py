"""onnxgraph/runtime.py compare_outputs: samples of one output may differ in shape (sequences of different lengths,
as a sentence encoder's token outputs); the comparison still measures every value."""

from __future__ import annotations

import numpy as np

from edgecompress.onnxgraph.runtime import compare_outputs


def test_outputs_of_different_lengths_are_compared_value_by_value():
    rng = np.random.default_rng(0)
    ref = [[rng.standard_normal((1, 11, 4)), rng.standard_normal((1, 26, 4))]]
    same = compare_outputs(ref, [[r.copy() for r in ref[0]]], ["tokens"])
    assert same.outputs[0].ok and same.outputs[0].max_abs == 0.0
    off = [[ref[0][0], ref[0][1] + np.where(np.arange(4) == 2, 0.5, 0.0)]]
    d = compare_outputs(ref, off, ["tokens"]).outputs[0]
    assert not d.ok and abs(d.max_abs - 0.5) < 1e-12 and d.cosine < 1.0


def test_equal_shapes_still_give_top1_per_row():
    ref = [[np.array([[0.1, 0.9, 0.0]]), np.array([[0.8, 0.1, 0.1]])]]
    got = [[np.array([[0.1, 0.9, 0.0]]), np.array([[0.1, 0.8, 0.1]])]]
    assert compare_outputs(ref, got, ["logits"]).outputs[0].top1_agreement == 0.5
