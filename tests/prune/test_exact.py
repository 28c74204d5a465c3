"""Channels planted at exactly zero, once pruned, leave the outputs unchanged (every group kind)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from prune_helpers import plant_zeros, run

from edgecompress.onnxgraph.io import input_specs, output_specs
from edgecompress.prune import PruneConfig, prune
from examples import zoo


class SplitNet(torch.nn.Module):
    """Concat of two branches, then Split and Slice on the channel axis (boundaries on the branches)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.c = torch.nn.Conv2d(8, 4, 3, padding=1)
        self.d = torch.nn.Conv2d(8, 4, 3, padding=1)
        self.e = torch.nn.Conv2d(4, 8, 1)
        self.f = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = torch.relu(torch.cat([self.a(x), self.b(x)], 1))
        p, q = torch.split(y, [8, 8], dim=1)
        return self.f(torch.relu(self.e(self.c(p) + self.d(q) + self.d(y[:, 8:]))))


CASES = {
    "split_slice": (SplitNet, (1, 1, 8, 8), {}),
    "resnet_folded": (lambda: zoo.ResNet18Like(10, width=8), (1, 3, 32, 32), {}),
    "resnet_bn": (lambda: zoo.ResNet18Like(10, width=8), (1, 3, 32, 32), {"keep_bn": True}),
    "depthwise_inverted_residual": (zoo.mnist_depthwise, (1, 1, 28, 28), {"keep_bn": True}),
    "concat_flatten_gemm": (zoo.concat_net, (1, 1, 28, 28), {}),
    "mlp": (lambda: zoo.MLP(hidden=32), (1, 1, 28, 28), {}),
    "transformer_heads": (zoo.tiny_transformer, (1, 1, 28, 28), {}),
    "seq_encoder_heads": (zoo.seq_encoder, (1, 10, 16), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_planted_zero_channels_prune_exactly(case, exported, tmp_path):
    factory, shape, kw = CASES[case]
    torch.manual_seed(0)
    src = exported(factory(), shape, **kw)
    planted_path = tmp_path / "planted.onnx"
    planted = plant_zeros(src, planted_path)
    assert planted
    out = tmp_path / "pruned.onnx"
    res = prune(str(planted_path), PruneConfig(ratio=0.5, round_to=1, min_keep=0.01), out=str(out))
    rep = res.report
    removed = {g.id: np.asarray(g.removed) for g in rep.groups}
    for gid, chans in planted.items():
        assert np.array_equal(removed[gid], chans), f"group {gid}"
    assert rep.params_after < rep.params_before and rep.macs_after < rep.macs_before
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ref, got = run(planted_path, x), run(out, x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    a, b = onnx.load(str(planted_path)), onnx.load(str(out))
    assert input_specs(a) == input_specs(b) and output_specs(a) == output_specs(b)
    onnx.checker.check_model(b, full_check=True)
