"""BatchNorm after a Concat of two pruned convs: moment matching must map every concatenated segment."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecompress.data import FeedData
from edgecompress.prune import PruneConfig, prune
from edgecompress.prune.calib import collect


def _concat_bn_model(path) -> None:
    rng = np.random.default_rng(0)

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr, np.float32), name)

    inits = [init("w0", rng.standard_normal((8, 2, 3, 3))), init("wa", rng.standard_normal((8, 8, 3, 3)) / 8),
             init("wb", rng.standard_normal((8, 8, 3, 3)) / 8), init("gamma", rng.random(16) + 0.5),
             init("beta", rng.standard_normal(16)), init("mu", rng.standard_normal(16)),
             init("var", rng.random(16) + 0.5), init("wc", rng.standard_normal((4, 16, 3, 3)))]
    pads = [1, 1, 1, 1]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["h"], name="c0", pads=pads),
             helper.make_node("Relu", ["h"], ["hr"], name="relu0"),
             helper.make_node("Conv", ["hr", "wa"], ["a"], name="ca", pads=pads),
             helper.make_node("Conv", ["hr", "wb"], ["b"], name="cb", pads=pads),
             helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mu", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wc"], ["y"], name="cc", pads=pads)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_batchnorm_after_concat_is_reestimated_per_kept_channel(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "p.onnx"
    _concat_bn_model(src)
    calib = FeedData.from_arrays({"x": np.random.default_rng(1).standard_normal((16, 2, 8, 8)).astype(np.float32)})
    res = prune(str(src), PruneConfig(ratio=0.5, round_to=1, max_drop=1.0), out=str(out), calibration=calib)
    r = res.report
    groups = {g.name: g for g in r.groups}
    assert {n: (g.channels_before, g.channels_after) for n, g in groups.items()} == \
        {"c0": (8, 4), "ca": (8, 4), "cb": (8, 4)}
    assert r.bn_reestimated == ("bn",) and "ca" in r.reconstructed and "cb" in r.reconstructed
    assert np.isfinite(r.fidelity.cosine) and r.fidelity.cosine > 0.85
    assert r.fidelity.rel_error < r.fidelity_without_reconstruction.rel_error

    # the pruned BN holds the parameters of the kept channels: ca's at offset 0, cb's at offset 8
    kept = np.concatenate([np.setdiff1d(np.arange(8), groups["ca"].removed),
                           8 + np.setdiff1d(np.arange(8), groups["cb"].removed)])
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(src)).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(after["gamma"], before["gamma"][kept])
    np.testing.assert_array_equal(after["beta"], before["beta"][kept])

    # moment matching: each kept BN output channel has the mean and spread of the same channel of the input model
    feeds = calib.feeds()
    n_ref = np.concatenate(collect(onnx.load(str(src)), ["n"], feeds)["n"])[:, kept]
    n_got = np.concatenate(collect(onnx.load(str(out)), ["n"], feeds)["n"])
    assert np.isfinite(n_got).all()
    np.testing.assert_allclose(n_got.mean((0, 2, 3)), n_ref.mean((0, 2, 3)), atol=1e-3)
    np.testing.assert_allclose(n_got.std((0, 2, 3)), n_ref.std((0, 2, 3)), rtol=1e-3)
