"""MeanCompensation: a removed channel's mean contribution moves into its consumers' biases.

Channels with zero weights and a non-zero bias send the constant act(bias) into every consumer (the case
BatchNorm folding makes common in real networks): removing them must not change the function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgecompress.fidelity import compare_models
from edgecompress.prune import PruneConfig, prune


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # the constant passes a depthwise conv
        self.c2 = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        h = torch.relu(self.dw(torch.relu(self.c1(x))))
        return self.fc(torch.flatten(torch.relu(self.c2(h)), 1))


class TokenMLP(nn.Module):
    """Linear layers on [batch, tokens, features]: exported as MatMul + Add (the bias in a separate Add)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


def _plant(layer: nn.Module, dead: np.ndarray, dw: nn.Module | None = None) -> None:
    """Zero the weights of `dead` output channels and give them a positive bias: they output relu(bias) > 0."""
    with torch.no_grad():
        layer.weight[dead] = 0.0
        layer.bias[dead] = torch.linspace(0.5, 2.0, len(dead))
        if dw is not None:  # the depthwise conv of those channels: the same (its weights are in the group too)
            dw.weight[dead] = 0.0
            dw.bias[dead] = torch.linspace(0.2, 1.0, len(dead))


@pytest.mark.parametrize("case", ["conv", "matmul"])
def test_zero_weight_channels_with_bias_are_removed_exactly(exported, tmp_path, case):
    torch.manual_seed(0)
    dead = np.array([1, 4, 6, 9, 12, 15]) if case == "conv" else np.arange(0, 32, 3)
    if case == "conv":
        m, shape = ConvNet(), (1, 3, 8, 8)
        _plant(m.c1, dead, m.dw)
    else:
        m, shape = TokenMLP(), (1, 6, 16)
        _plant(m.l1, dead)
    src = exported(m, shape)
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=rng.normal(size=(48, *shape[1:])).astype(np.float32))
    check = tmp_path / "check.npz"
    np.savez(check, input=rng.normal(size=(32, *shape[1:])).astype(np.float32))
    cfg = dict(criterion="magnitude", alpha=0.01, round_to=1, reconstruct=False)
    with_c = prune(str(src), PruneConfig(**cfg), out=str(tmp_path / "c.onnx"), calibration=str(calib))
    without = prune(str(src), PruneConfig(**cfg, compensate=False, max_drop=1.0), out=str(tmp_path / "n.onnx"),
                    calibration=str(calib))
    assert not any("mean contribution" in n for n in without.report.notes)
    removed = sorted(int(i) for g in with_c.report.groups for i in g.removed)
    assert removed == sorted(dead.tolist())
    assert any("mean contribution" in n for n in with_c.report.notes)
    good = compare_models(str(src), str(tmp_path / "c.onnx"), str(check))
    bad = compare_models(str(src), str(tmp_path / "n.onnx"), str(check))
    # the dead channels are constant per position: only the conv's zero-padded border differs from the mean
    assert good.rel_error < (0.05 if case == "conv" else 1e-5)
    assert bad.rel_error > 5 * max(good.rel_error, 1e-3)


def test_never_more_parameters_or_macs(exported, tmp_path):
    """A pruned model never has more parameters or MACs than its input, also when biases are created."""
    from edgecompress.onnxgraph import census
    from edgecompress.onnxgraph.io import load_model

    torch.manual_seed(0)
    m = ConvNet()
    m.c2 = nn.Conv2d(16, 8, 1, bias=False)  # compensation has to create this bias
    src = exported(m, (1, 3, 8, 8))
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).normal(size=(32, 3, 8, 8)).astype(np.float32))
    for ratio in (0.25, 0.5):
        out = tmp_path / f"p{ratio}.onnx"
        prune(str(src), PruneConfig(ratio=ratio, round_to=1), out=str(out), calibration=str(calib))
        a, b = load_model(str(src)), load_model(str(out))
        assert census.count_params(b) < census.count_params(a)
        assert census.count_macs(b).total < census.count_macs(a).total


def test_shared_constants_stay_shared_and_dead_ones_go(tmp_path):
    """The analysis gives every use of a constant its own copy; the written model merges equal copies back and
    drops initializers nothing reads, so parameters only ever go down (a real VAD model grew 31 % before)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecompress.onnxgraph import census

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("w1", (8, 16)), ("w2", (16, 4)), ("w3", (8, 4)), ("c", (4,)), ("unused", (3, 3)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["m2"]), helper.make_node("Add", ["m2", "c"], ["y1"]),
             helper.make_node("MatMul", ["x", "w3"], ["m3"]), helper.make_node("Add", ["m3", "c"], ["y2"])]
    out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("y1", "y2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])], out, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    res = prune(str(src), PruneConfig(ratio=0.5, round_to=1), out=str(tmp_path / "p.onnx"))
    p = onnx.load(str(tmp_path / "p.onnx"))
    assert [t.name for t in p.graph.initializer].count("c") == 1 and "unused" not in {t.name for t in p.graph.initializer}
    assert census.count_params(p) == 8 * 8 + 8 * 4 + 8 * 4 + 4  # hidden units 16 -> 8; c once
    assert res.report.params_after < res.report.params_before
