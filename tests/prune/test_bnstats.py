"""BatchNormMomentMatching on a small onnx.helper graph (Conv -> BN -> Relu -> Conv -> BN -> Relu -> Conv),
measured through ONNX Runtime: after pruning c1, the BN behind c2 is re-estimated so that its output (the next
layer's input) has the original per-channel mean and spread again."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecompress.prune.apply import ChannelRemovalPass
from edgecompress.prune.bnstats import BatchNormMomentMatching
from edgecompress.prune.calib import collect
from edgecompress.prune.graphutil import const_array, prepare, to_proto
from edgecompress.prune.groups import analyze

SHAPE = (4, 3, 8, 8)


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = {"w1": rng.normal(size=(8, 3, 3, 3)), "b1": rng.normal(size=8) * 0.1,
             "w2": rng.normal(size=(6, 8, 3, 3)) * 0.3, "b2": rng.normal(size=6) * 0.1,
             "w3": rng.normal(size=(4, 6, 1, 1)), "b3": np.zeros(4)}
    for bn, c in (("bn1", 8), ("bn2", 6)):
        inits.update({f"{bn}_g": rng.uniform(0.5, 1.5, c), f"{bn}_b": rng.normal(size=c) * 0.2,
                      f"{bn}_m": rng.normal(size=c), f"{bn}_v": rng.uniform(0.5, 4.0, c)})
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h1", "bn1_g", "bn1_b", "bn1_m", "bn1_v"], ["n1"], name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h2", "bn2_g", "bn2_b", "bn2_m", "bn2_v"], ["n2"], name="bn2"),
             helper.make_node("Relu", ["n2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="c3")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4, 8, 8])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _feeds(seed: int, n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=SHAPE).astype(np.float32)} for _ in range(n)]


def _stats(model, name: str, feeds) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of tensor `name` over `feeds`, run in ONNX Runtime."""
    xs = collect(model, [name], feeds)[name]
    x = np.concatenate([np.moveaxis(a.astype(np.float64), 1, 0).reshape(a.shape[1], -1) for a in xs], 1)
    return x.mean(1), x.std(1)


def _bn(model: ir.Model, name: str) -> list[np.ndarray]:
    node = next(n for n in model.graph if n.name == name)
    return [const_array(v).copy() for v in node.inputs[1:5]]


def _setup(prune: tuple[str, ...]):
    work = prepare(_model())
    base = to_proto(work, keep_shapes=True)
    analysis = analyze(work)
    keep = {}
    for g in analysis.groups:
        origin = next((s.node for s in g.slices if s.kind == "weight_out"), None)
        if origin in prune:
            assert g.prunable, g.reasons
            keep[g.id] = np.arange(0, g.size, 2)  # every second channel
    assert len(keep) == len(prune)
    pruned = ir.from_proto(base)
    assert ChannelRemovalPass(analysis, keep)(pruned)
    return base, analysis, keep, pruned


@pytest.mark.parametrize("prune", [("c1",), ("c1", "c2")], ids=["c1", "c1+c2"])
def test_moment_matching_restores_the_next_layers_input_statistics(prune):
    base, analysis, keep, pruned = _setup(prune)
    calib, held = _feeds(1, 8), _feeds(2, 8)
    kept2 = np.arange(0, 6, 2) if "c2" in prune else np.arange(6)  # bn2's channels left after pruning
    bn1_before, bn2_before = _bn(pruned, "bn1"), _bn(pruned, "bn2")
    raw = to_proto(pruned)
    bn = BatchNormMomentMatching(base, analysis, keep, calib)
    assert bn(pruned)
    assert bn.updated == ["bn2"]  # bn1's input (c1's kept channels) did not change: left exactly as it was
    for a, b in zip(bn1_before, _bn(pruned, "bn1"), strict=True):
        np.testing.assert_array_equal(a, b)
    g2, b2, m2, v2 = _bn(pruned, "bn2")
    np.testing.assert_array_equal(g2, bn2_before[0])  # only the running statistics move
    np.testing.assert_array_equal(b2, bn2_before[1])
    assert not np.allclose(m2, bn2_before[2]) and not np.allclose(v2, bn2_before[3])
    matched = to_proto(pruned)

    mu_o, sd_o = _stats(base, "n2", calib)
    mu_o, sd_o = mu_o[kept2], sd_o[kept2]
    mu_raw, sd_raw = _stats(raw, "n2", calib)
    mu_new, sd_new = _stats(matched, "n2", calib)
    # on the calibration data: restored to float32 precision; before, off by a large fraction of the spread
    np.testing.assert_allclose(mu_new, mu_o, rtol=0, atol=1e-5 * sd_o.max())  # measured 3e-8
    np.testing.assert_allclose(sd_new, sd_o, rtol=1e-5)
    assert np.abs(mu_raw - mu_o).max() > 0.1 * sd_o.max() and np.abs(sd_raw / sd_o - 1).max() > 0.05  # 0.20, 0.14

    # on held-out inputs the matched statistics stay much closer to the original's than the raw pruned ones
    mu_h, sd_h = _stats(base, "n2", held)
    mu_h, sd_h = mu_h[kept2], sd_h[kept2]

    def gap(mu, sd):
        return float(np.abs(mu - mu_h).max() / sd_h.max() + np.abs(sd / sd_h - 1).max())
    assert gap(*_stats(matched, "n2", held)) < 0.25 * gap(*_stats(raw, "n2", held))  # measured 0.05 vs 0.37


def test_unchanged_model_keeps_its_statistics():
    """Nothing pruned upstream of any BN: the statistics stay (to ORT's float32 noise between two sessions that
    fuse differently, ~1e-6 relative: the pass may still rewrite bn2 with those values) and so does the output."""
    base, analysis, _, _ = _setup(("c1",))
    pruned = ir.from_proto(base)
    before = {n: _bn(pruned, n) for n in ("bn1", "bn2")}
    BatchNormMomentMatching(base, analysis, {}, _feeds(1, 4))(pruned)
    for n, arrays in before.items():
        for a, b in zip(arrays, _bn(pruned, n), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    for f in _feeds(3, 2):
        ref = collect(base, ["y"], [f])["y"][0]
        np.testing.assert_allclose(collect(to_proto(pruned), ["y"], [f])["y"][0], ref, rtol=1e-4,
                                   atol=1e-4 * np.abs(ref).max())
