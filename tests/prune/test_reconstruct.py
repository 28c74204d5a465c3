"""LeastSquaresReconstruction on small onnx.helper graphs, measured through ONNX Runtime on held-out inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper
from prune_helpers import run

from edgecompress.prune.apply import ChannelRemovalPass
from edgecompress.prune.graphutil import const_array, prepare, to_proto
from edgecompress.prune.groups import analyze
from edgecompress.prune.reconstruct import LeastSquaresReconstruction


def _model(nodes, inits: dict[str, np.ndarray], x_shape, y_shape) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _pruned(model: onnx.ModelProto, kept: np.ndarray):
    """(base, analysis, keep, pruned IR) with the first prunable group cut down to `kept`."""
    work = prepare(model)
    base = to_proto(work, keep_shapes=True)
    analysis = analyze(work)
    gid = next(g.id for g in analysis.groups if g.prunable)
    keep = {gid: np.asarray(kept)}
    pruned = ir.from_proto(base)
    assert ChannelRemovalPass(analysis, keep)(pruned)
    return base, analysis, keep, pruned


def _rel_err(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.linalg.norm(ref - got) / np.linalg.norm(ref))


def _feeds(rng, n: int, shape) -> list[dict[str, np.ndarray]]:
    return [{"x": rng.normal(size=shape).astype(np.float32)} for _ in range(n)]


def _weights(model: ir.Model, node: str) -> list[np.ndarray]:
    n = next(n for n in model.graph if n.name == node)
    return [const_array(v) for v in n.inputs[1:]]


def _dup_conv():
    """c1 -> Relu -> c2 where c1's channels 4..7 repeat channels 0..3 exactly (same weights and bias)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 4, 3, 3))
    w1[4:] = w1[:4]
    b1 = rng.normal(size=8)
    b1[4:] = b1[:4]
    w2, b2 = rng.normal(size=(6, 8, 3, 3)), rng.normal(size=6)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="c2", pads=[1, 1, 1, 1])]
    return _model(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, (2, 4, 8, 8), (2, 6, 8, 8)), w2, b2


def test_conv_duplicate_channels_are_folded_back_exactly():
    """The removed channels equal kept ones, so the exact answer is known: c2's weights for channel i become
    w2[:, i] + w2[:, i + 4]; the pruned model then computes the original function on unseen inputs."""
    model, w2, b2 = _dup_conv()
    base, analysis, keep, pruned = _pruned(model, np.arange(4))
    rng = np.random.default_rng(1)
    calib, held = _feeds(rng, 6, (2, 4, 8, 8)), _feeds(rng, 4, (2, 4, 8, 8))
    raw = to_proto(pruned)
    ls = LeastSquaresReconstruction(base, analysis, keep, calib, ridge=0.0)
    assert ls(pruned) and ls.refitted == ["c2"] and not ls.notes
    w_new, b_new = _weights(pruned, "c2")
    np.testing.assert_allclose(w_new, w2[:, :4] + w2[:, 4:], rtol=1e-3, atol=2e-3)  # float32 normal equations
    np.testing.assert_allclose(b_new, b2, rtol=1e-3, atol=2e-3)
    fixed = to_proto(pruned)
    for f in held:
        ref = run(base, f["x"])
        assert _rel_err(ref, run(raw, f["x"])) > 0.2  # dropping half the inputs of c2 hurts
        assert _rel_err(ref, run(fixed, f["x"])) < 1e-3


def _gemm_net(rng):
    """x (16 rows x 12) -> Gemm(24) -> Relu -> Gemm(5) -> y, inputs drawn from a 4-dimensional subspace (the
    hidden channels are correlated, as in a trained net, so the kept ones can stand in for the removed ones)."""
    w1, b1 = rng.normal(size=(24, 12)), rng.normal(size=24) * 0.1
    w2, b2 = rng.normal(size=(5, 24)), rng.normal(size=5)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="g1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="g2", transB=1)]
    return _model(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, (16, 12), (16, 5)), w1, b1


def _low_rank_feeds(rng, n: int, basis: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"x": (rng.normal(size=(16, basis.shape[0])) @ basis
                   + 0.05 * rng.normal(size=(16, basis.shape[1]))).astype(np.float32)} for _ in range(n)]


def test_gemm_least_squares_lowers_held_out_error_and_equals_numpy_lstsq():
    rng = np.random.default_rng(2)
    model, w1, b1 = _gemm_net(rng)
    kept = np.arange(0, 24, 2)
    base, analysis, keep, pruned = _pruned(model, kept)
    basis = rng.normal(size=(4, 12))
    calib, held = _low_rank_feeds(rng, 20, basis), _low_rank_feeds(rng, 10, basis)
    raw = to_proto(pruned)
    exact = ir.from_proto(raw)
    assert LeastSquaresReconstruction(base, analysis, keep, calib, ridge=0.0)(exact)
    ls = LeastSquaresReconstruction(base, analysis, keep, calib)  # the default ridge, as the stage runs it
    assert ls(pruned) and ls.refitted == ["g2"]
    fixed = to_proto(pruned)

    # without ridge, the same problem solved independently: kept hidden activations (+1) -> original output
    h = np.concatenate([np.maximum(f["x"] @ w1.T + b1, 0)[:, kept] for f in calib])
    y = np.concatenate([run(base, f["x"]) for f in calib])
    sol = np.linalg.lstsq(np.concatenate([h, np.ones((len(h), 1))], 1), y, rcond=None)[0]
    w_new, b_new = _weights(exact, "g2")
    assert _rel_err(h @ sol[:-1] + sol[-1], h @ w_new.T + b_new) < 1e-4
    w_new, b_new = _weights(pruned, "g2")
    assert _rel_err(h @ sol[:-1] + sol[-1], h @ w_new.T + b_new) < 1e-2  # the ridge moves the fit a little

    err_raw = np.mean([_rel_err(run(base, f["x"]), run(raw, f["x"])) for f in held])
    err_ls = np.mean([_rel_err(run(base, f["x"]), run(fixed, f["x"])) for f in held])
    assert err_ls < 0.5 * err_raw, (err_ls, err_raw)


def test_too_few_calibration_rows_leave_the_weights_as_pruned():
    rng = np.random.default_rng(3)
    model, _, _ = _gemm_net(rng)
    base, analysis, keep, pruned = _pruned(model, np.arange(12))
    before = _weights(pruned, "g2")
    one = _feeds(rng, 1, (16, 12))  # 16 rows for 13 unknowns: under the 2x minimum
    ls = LeastSquaresReconstruction(base, analysis, keep, one)
    assert not ls(pruned) and ls.refitted == []
    assert any("16 calibration rows for 13 unknowns" in n for n in ls.notes), ls.notes
    for a, b in zip(before, _weights(pruned, "g2"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gemm_alpha_beta_are_respected_by_the_refit():
    """y = alpha A B + beta C: the least-squares solution is for alpha B and beta C, so B and C are written divided
    by them (a refit that ignored them made alpha=2, beta=0.5 worse than no refit: 0.83 -> 0.89)."""
    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from edgecompress.prune.apply import ChannelRemovalPass
    from edgecompress.prune.calib import collect
    from edgecompress.prune.graphutil import prepare, to_proto
    from edgecompress.prune.groups import analyze
    from edgecompress.prune.reconstruct import LeastSquaresReconstruction

    errs = {}
    for alpha, beta in ((1.0, 1.0), (2.0, 0.5)):
        rng = np.random.default_rng(0)
        inits = {"w1": rng.normal(size=(8, 16)), "b1": rng.normal(size=16), "w2": rng.normal(size=(16, 4)),
                 "b2": rng.normal(size=4)}
        g = helper.make_graph(
            [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="g1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="g2", alpha=alpha, beta=beta)], "t",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
            [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        work = prepare(m)
        base = to_proto(work, keep_shapes=True)
        an = analyze(work)
        gid = next(gr.id for gr in an.groups if gr.prunable)
        keep = {gid: np.arange(0, 16, 2)}
        feeds = [{"x": rng.normal(size=(2, 8)).astype(np.float32)} for _ in range(100)]
        pruned = ir.from_proto(base)
        ChannelRemovalPass(an, keep)(pruned)
        raw = to_proto(pruned)
        LeastSquaresReconstruction(base, an, keep, feeds)(pruned)
        ref, r0, r1 = (np.concatenate(collect(mm, ["y"], feeds)["y"]) for mm in (base, raw, to_proto(pruned)))
        errs[(alpha, beta)] = [float(np.linalg.norm(a - ref) / np.linalg.norm(ref)) for a in (r0, r1)]
    for (alpha, beta), (before, after) in errs.items():
        assert after < 0.6 * before, (alpha, beta, before, after)
