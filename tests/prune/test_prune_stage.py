"""prune(): the stage contract, reports, errors, recovery with calibration data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from prune_helpers import plant_zeros, run

from edgecompress.data import FeedData, load_data
from edgecompress.errors import ConfigError, UnsupportedError
from edgecompress.fsutil import sha256_file
from edgecompress.onnxgraph.io import input_specs, output_specs
from edgecompress.prune import PruneConfig, prune
from examples import mnist_models, zoo


def test_target_macs_report_and_signature(exported, tmp_path):
    torch.manual_seed(0)
    src = exported(zoo.ResNet18Like(10, width=16), (1, 3, 32, 32), keep_bn=True)
    digest = sha256_file(src)
    out = tmp_path / "p.onnx"
    res = prune(str(src), PruneConfig(max_drop=1.0, target_macs=0.5), out=str(out))
    r = res.report
    assert sha256_file(src) == digest  # input untouched
    assert 0.3 < r.macs_kept <= 0.5 and r.params_after < r.params_before
    assert r.mode == "target_macs" and r.round_to == 8
    assert all(g.channels_after % 8 == 0 or g.channels_after == g.channels_before for g in r.groups)
    assert [u.name for u in r.unprunable] == ["/fc/Gemm"]
    a, b = onnx.load(str(src)), onnx.load(str(out))
    assert input_specs(a) == input_specs(b) and output_specs(a) == output_specs(b)
    onnx.checker.check_model(b, full_check=True)
    onnx.shape_inference.infer_shapes(b, strict_mode=True)
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert run(out, x).shape == (1, 10)
    d = res.to_dict()
    assert d["report"]["groups"][0]["criterion_values"] and d["stage"] == "prune"
    assert res.artifact.parent.path == src


def test_nothing_prunable_lists_reasons(exported, tmp_path):
    src = exported(torch.nn.Conv2d(1, 4, 3), (1, 1, 8, 8))
    with pytest.raises(UnsupportedError, match="nothing in this graph can be pruned") as ei:
        prune(str(src), PruneConfig(ratio=0.5), out=str(tmp_path / "p.onnx"))
    assert ei.value.exit_code == 2
    assert "model output" in ei.value.report["unprunable"][0]["reasons"][0]
    assert not (tmp_path / "p.onnx").exists()


class Partial(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.c = torch.nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        y = torch.nn.functional.local_response_norm(y, 3)  # mixes channels: a's group is not prunable
        return self.c(torch.relu(self.b(y)))


def test_partially_prunable_prunes_what_is_safe(exported, tmp_path):
    torch.manual_seed(0)
    src = exported(Partial(), (1, 1, 8, 8))
    res = prune(str(src), PruneConfig(max_drop=1.0, ratio=0.5), out=str(tmp_path / "p.onnx"))
    r = res.report
    assert [(g.name, g.channels_before, g.channels_after) for g in r.groups] == [("/b/Conv", 16, 8)]
    blocked = {u.name: u.reasons for u in r.unprunable}
    assert "/a/Conv" in blocked and blocked["/a/Conv"]
    assert run(tmp_path / "p.onnx", np.ones((1, 1, 8, 8), np.float32)).shape == (1, 4, 8, 8)


def test_skip_keeps_a_group(exported, tmp_path):
    torch.manual_seed(0)
    src = exported(zoo.MLP(hidden=32), (1, 1, 28, 28))
    res = prune(str(src), PruneConfig(max_drop=1.0, ratio=0.5, skip=("/fc1/Gemm",)), out=str(tmp_path / "p.onnx"))
    assert [g.name for g in res.report.groups] == ["/fc2/Gemm"]
    assert any("--skip" in u.reasons[0] for u in res.report.unprunable)


def test_magnitude_criterion_finds_planted_zeros(exported, tmp_path):
    torch.manual_seed(0)
    src = exported(zoo.MLP(hidden=32), (1, 1, 28, 28))
    planted = plant_zeros(src, tmp_path / "z.onnx", fraction=0.25)
    res = prune(str(tmp_path / "z.onnx"), PruneConfig(criterion="magnitude", alpha=0.01, round_to=1),
                out=str(tmp_path / "p.onnx"))
    assert {g.id: list(g.removed) for g in res.report.groups} == {k: list(v) for k, v in planted.items()}


@pytest.mark.parametrize("keep_bn", [True, False])
def test_reconstruction_recovers_fidelity(exported, tmp_path, data_dir, keep_bn):
    torch.manual_seed(0)
    src = exported(mnist_models.MnistResNet(width=8), (1, 1, 28, 28), keep_bn=keep_bn)
    calib = load_data(data_dir / "mnist_calibration.npz").head(48)
    evald = load_data(data_dir / "mnist_eval.npz").head(32)
    res = prune(str(src), PruneConfig(ratio=0.5, round_to=2), out=str(tmp_path / "p.onnx"), calibration=calib,
                eval_data=evald)
    r = res.report
    assert r.reconstructed and r.fidelity_without_reconstruction is not None
    assert r.fidelity.rel_error < r.fidelity_without_reconstruction.rel_error
    assert r.fidelity.samples == 32
    if keep_bn:
        assert r.bn_reestimated


@pytest.mark.parametrize("criterion", ["l1", "bn", "activation", "taylor"])
def test_criteria_run(exported, tmp_path, criterion):
    torch.manual_seed(0)
    src = exported(mnist_models.MnistResNet(width=8), (1, 1, 28, 28), keep_bn=True)
    calib = FeedData.from_arrays({"x": np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)})
    res = prune(str(src), PruneConfig(max_drop=1.0, ratio=0.5, criterion=criterion, reconstruct=False, round_to=1),
                out=str(tmp_path / "p.onnx"), calibration=calib)
    assert all(g.channels_after == g.channels_before // 2 for g in res.report.groups)
    assert not any("instead" in n for n in res.report.notes)


@pytest.mark.parametrize("criterion", ["activation", "taylor"])
def test_data_criteria_need_calibration(exported, tmp_path, criterion):
    src = exported(zoo.MLP(hidden=16), (1, 1, 28, 28))
    with pytest.raises(ConfigError, match="calibration"):
        prune(str(src), PruneConfig(ratio=0.5, criterion=criterion), out=str(tmp_path / "p.onnx"))


def test_taylor_gives_planted_zero_channels_no_importance(exported, tmp_path):
    """A channel whose weights and bias are zero changes nothing when removed: its Taylor importance is exactly 0,
    every other channel's is not, so half the channels go and they are the planted ones."""
    torch.manual_seed(0)
    src = exported(mnist_models.MnistResNet(width=8), (1, 1, 28, 28), keep_bn=True)
    planted = plant_zeros(src, tmp_path / "z.onnx", fraction=0.5)
    calib = FeedData.from_arrays({"x": np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)})
    res = prune(str(tmp_path / "z.onnx"), PruneConfig(ratio=0.5, criterion="taylor", round_to=1, min_keep=0.01,
                                                      reconstruct=False, compensate=False),
                out=str(tmp_path / "p.onnx"), calibration=calib)
    for g in res.report.groups:
        vals = np.asarray(g.criterion_values)
        assert np.all(vals[planted[g.id]] == 0) and np.all(np.delete(vals, planted[g.id]) > 0), g.name
        assert list(g.removed) == list(planted[g.id])


def test_constant_node_shared_by_two_consumers(tmp_path):
    """A Constant node's output read by two nodes (the MiniLM export's ReduceSum axes): un-sharing it must not
    reuse the Constant's output name for the copy (onnx-ir then rejects the graph as redeclared)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w2")
    axes = helper.make_tensor("axes_value", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"]),
             helper.make_node("Constant", [], ["axes"], value=axes, name="Constant_axes"),
             helper.make_node("ReduceSum", ["y", "axes"], ["s1"], keepdims=1),
             helper.make_node("ReduceSum", ["x", "axes"], ["s2"], keepdims=1),
             helper.make_node("Add", ["s1", "s2"], ["out"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    res = prune(str(src), PruneConfig(max_drop=1.0, ratio=0.5, round_to=1), out=str(tmp_path / "p.onnx"))
    assert res.report.groups[0].channels_after == 8
    onnx.checker.check_model(onnx.load(str(tmp_path / "p.onnx")), full_check=True)
