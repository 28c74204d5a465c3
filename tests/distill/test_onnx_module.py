"""OnnxModule: ONNX graphs from both exporters run in PyTorch like ONNX Runtime runs them, weights go back into the
same graph, and what it cannot run is refused by name."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgecompress.distill.onnx_module import OnnxModule, write_weights
from edgecompress.errors import UnsupportedError
from examples import zoo


class ConvBN(nn.Module):
    """Conv + BatchNorm (kept), PReLU, max/avg pools, a residual add, a fixed-batch flatten and two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8)
        self.act = nn.PReLU(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        h = self.act(self.bn(self.c1(x)))
        h = torch.max_pool2d(h + nn.functional.relu6(self.c2(h)), 2)
        h = nn.functional.avg_pool2d(h, 2)
        return self.fc(h.reshape(1, -1)), torch.softmax(h.mean((2, 3)), 1)


def _export(model, shape, *, dynamo=False, dynamic=False, keep_bn=False, ints=False) -> onnx.ModelProto:
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randint(0, 100, shape) if ints else torch.randn(*shape)
    f = io.BytesIO()
    kw = {"dynamic_axes": {"input": {0: "batch"}}} if dynamic else {}
    if dynamo:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            torch.onnx.export(model, (x,), f"{d}/m.onnx", dynamo=True, input_names=["input"])
            return onnx.load(f"{d}/m.onnx")
    torch.onnx.export(model, (x,), f, dynamo=False, input_names=["input"], do_constant_folding=not keep_bn, **kw)
    return onnx.load_from_string(f.getvalue())


def _ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


CASES = {
    "convbn_torchscript": (lambda: ConvBN(), (1, 3, 32, 32), {"keep_bn": True}),
    "convbn_dynamo": (lambda: ConvBN(), (1, 3, 32, 32), {"dynamo": True}),
    "resnet_like": (lambda: zoo.resnet18_like(), (1, 3, 64, 64), {}),
    "tiny_vit": (lambda: zoo.TinyTransformer(), (1, 1, 28, 28), {}),
    "bert_tokens": (lambda: zoo.BertLike(vocab=100, hidden=32, layers=1, heads=2, ffn=64), (1, 16), {"ints": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_onnxruntime(case):
    make, shape, kw = CASES[case]
    model = _export(make(), shape, **kw)
    mod = OnnxModule(model).eval()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, shape).astype(np.int64) if case == "bert_tokens" else \
        rng.standard_normal(shape).astype(np.float32)
    ref = _ort(model, x)
    with torch.no_grad():
        got = mod(torch.from_numpy(x))
    assert len(got) == len(ref)
    for r, g in zip(ref, got, strict=True):
        assert g.shape == r.shape
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(r).max())))
    assert sum(p.numel() for p in mod.parameters()) > 0


def test_fixed_batch_reshape_runs_batched():
    """A fixed-batch export (Reshape to [1, -1]) still runs a batch of 4: each row equals its own ORT run."""
    model = _export(ConvBN(), (1, 3, 32, 32))
    mod = OnnxModule(model).eval()
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        got = mod(torch.from_numpy(x))
    for i in range(4):
        ref = _ort(model, x[i:i + 1])
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_allclose(g[i:i + 1].numpy(), r, rtol=1e-4, atol=1e-5)


def test_trained_weights_go_back_into_the_same_graph():
    model = _export(ConvBN(), (1, 3, 32, 32), keep_bn=True)
    mod = OnnxModule(model)
    with torch.no_grad():
        for p in mod.parameters():
            p.mul_(1.1).add_(0.01)
    new = write_weights(model, mod.weights())
    onnx.checker.check_model(new)
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in model.graph.node]
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        got = mod.eval()(torch.from_numpy(x))
    for r, g in zip(_ort(new, x), got, strict=True):
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-4, atol=1e-5)
    assert not np.allclose(_ort(new, x)[0], _ort(model, x)[0])  # the weights did change


def test_control_flow_is_refused_by_name():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["y1"])], "t", [],
                             [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["y2"])], "e", [],
                              [helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1])])
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                          [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(UnsupportedError, match="unsupported op.*If"):
        OnnxModule(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
