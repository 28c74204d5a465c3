"""Export parity on architectures built in code: CNN with BatchNorm + residual adds, depthwise-separable net,
MLP, small transformer encoder with dynamic sequence length. Error <= 1e-4 of each output's scale."""

from __future__ import annotations

import textwrap

import numpy as np
import onnx
import pytest

from edgecompress.errors import ModelError, ValidationError
from edgecompress.export import ExportConfig, export
from edgecompress.export.source import load_factory
from edgecompress.onnxgraph.census import count_macs
from edgecompress.onnxgraph.io import input_specs

FACTORIES = textwrap.dedent("""
    import torch
    from examples.mnist_models import MnistResNet
    from examples.zoo import MLP, MobileNetV2Like, SeqEncoder

    def resnet():
        torch.manual_seed(0)
        return MnistResNet(width=8)

    def depthwise():
        torch.manual_seed(0)
        return MobileNetV2Like(num_classes=10, width_mult=0.5, in_channels=1, cfg=[(1, 8, 1, 1), (4, 16, 2, 2)],
                               stem_stride=2, last=32)

    def mlp():
        torch.manual_seed(0)
        return MLP(inp=64, hidden=32, out=10)

    def encoder():
        torch.manual_seed(0)
        return SeqEncoder(features=16, hidden=32, heads=4, layers=2)

    class TwoOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(8, 4)
            self.b = torch.nn.Linear(8, 3)

        def forward(self, x):
            return {"logits": self.a(x), "aux": self.b(x) * 100.0}

    def two_out():
        torch.manual_seed(0)
        return TwoOut()

    class Bad(torch.nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x) * 0.1   # nondeterministic: ONNX cannot match it

    def noisy():
        return Bad()
""")


@pytest.fixture(scope="module")
def models_py(tmp_path_factory):
    p = tmp_path_factory.mktemp("models") / "models.py"
    p.write_text(FACTORIES)
    return p


def _run(models_py, tmp_path, factory, inputs, **kw):
    cfg = ExportConfig(inputs=tuple(inputs), exporter=kw.pop("exporter", "torchscript"), **kw)
    return export(f"{models_py}:{factory}", cfg, out=tmp_path / f"{factory}.onnx")


@pytest.mark.parametrize("factory,inputs", [
    ("resnet", ["input:1x1x28x28"]),
    ("depthwise", ["input:batchx1x28x28"]),
    ("mlp", ["x:1x1x8x8"]),
])
def test_parity_cnn_depthwise_mlp(models_py, tmp_path, factory, inputs):
    res = _run(models_py, tmp_path, factory, inputs)
    rep = res.report
    assert rep.ok and rep.exporter == "torchscript"
    assert rep.max_error_rel_to_scale <= 1e-4
    d = res.to_dict()["report"]
    assert d["parity"][0]["outputs"][0]["rel_to_scale"] <= 1e-4
    m = onnx.load(str(res.artifact.path))
    assert [i.name for i in m.graph.input] == [inputs[0].split(":")[0]]
    ops = {n.op_type for n in m.graph.node}
    if factory == "resnet":
        assert "Add" in ops and "BatchNormalization" not in ops  # BN folded, residual adds kept
    if factory == "depthwise":
        assert any(a.name == "group" and a.i > 1 for n in m.graph.node if n.op_type == "Conv" for a in n.attribute)
        assert input_specs(m)[0].shape[0] == "batch"
        assert len(rep.parity[0].shapes) == 3  # batch 2, 3, 5 all ran
    assert res.artifact.stage == "export" and res.artifact.metrics["params"] > 0
    # the ONNX MAC count equals a PyTorch forward-hook count of the same model (batch 1)
    assert count_macs(m).total == _torch_macs(load_factory(f"{models_py}:{factory}"), inputs[0])


def _torch_macs(module, spec: str) -> int:
    import torch

    total = [0]

    def hook(mod, _inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total[0] += out.numel() * mod.in_features

    for mod in module.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            mod.register_forward_hook(hook)
    shape = [1] + [int(d) for d in spec.split(":")[1].split("x")[1:]]
    with torch.no_grad():
        module.eval()(torch.randn(*shape))
    return total[0]


def test_parity_transformer_dynamic_seq_torchscript(models_py, tmp_path):
    res = _run(models_py, tmp_path, "encoder", ["x:1xseq=8x16"])
    rep = res.report
    assert rep.max_error_rel_to_scale <= 1e-4
    assert [s["x"][1] for s in rep.parity[0].shapes] == [8, 9, 11]
    assert input_specs(onnx.load(str(res.artifact.path)))[0].shape == (1, "seq", 16)


def test_dict_outputs_named_and_checked_per_output(models_py, tmp_path):
    res = _run(models_py, tmp_path, "two_out", ["x:2x8"])
    outs = res.report.parity[0].outputs
    assert [o["name"] for o in outs] == ["logits", "aux"]
    assert outs[1]["scale"] > 10 * outs[0]["scale"]  # each output judged against its own scale


def test_over_tolerance_is_validation_error_without_output(models_py, tmp_path):
    with pytest.raises(ValidationError, match="over tolerance") as ei:
        _run(models_py, tmp_path, "noisy", ["x:1x64"])
    assert ei.value.exit_code == 1
    rep = ei.value.report
    assert rep["ok"] is False and rep["parity"][0]["outputs"][0]["rel_to_scale"] > 1e-4
    assert list(tmp_path.iterdir()) == []


def test_weights_state_dict_and_checkpoint_dict(models_py, tmp_path):
    import importlib.util

    import torch
    spec = importlib.util.spec_from_file_location("m_for_weights", models_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.MLP(inp=64, hidden=32, out=10)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5)
    x = torch.randn(1, 64)
    want = m(x).detach().numpy()
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    torch.save({"state_dict": m.state_dict(), "definition": f"{models_py}:mlp", "input_names": ["x"]},
               tmp_path / "ckpt.pt")
    import onnxruntime as ort

    for name, kw in (("a", {"weights": str(tmp_path / "sd.pt")}), ("b", {"weights": str(tmp_path / "ckpt.pt")})):
        res = _run(models_py, tmp_path, "mlp", ["x:1x64"], **kw)
        got = ort.InferenceSession(str(res.artifact.path)).run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    # MODEL given as the distill checkpoint itself, as a path and as the distill stage's ModelArtifact
    res = export(str(tmp_path / "ckpt.pt"), ExportConfig(inputs=("x:1x64",), exporter="torchscript"),
                 out=tmp_path / "from_ckpt.onnx")
    got = ort.InferenceSession(str(res.artifact.path)).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    from edgecompress.artifact import ModelArtifact

    parent = ModelArtifact(path=tmp_path / "ckpt.pt", format="torch", stage="distill")
    res = export(parent, ExportConfig(inputs=("x:1x64",), exporter="torchscript"), out=tmp_path / "art.onnx")
    assert [s["stage"] for s in res.artifact.lineage()] == ["distill", "export"]


def test_weights_that_do_not_fit(models_py, tmp_path):
    import torch

    torch.save({"fc1.weight": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="do not fit the model"):
        _run(models_py, tmp_path, "mlp", ["x:1x64"], weights=str(tmp_path / "bad.pt"))
    assert not (tmp_path / "mlp.onnx").exists()


def test_weights_for_a_derived_student_checkpoint_are_refused(models_py, tmp_path):
    """A derived student's weights are the checkpoint's own: --weights is an error, never silently ignored."""
    import torch

    torch.save({"state_dict": {"fc1.weight": torch.zeros(3, 3)}, "definition": f"derived:width=0.5 of {models_py}:mlp",
                "derived": {"teacher": f"{models_py}:mlp", "kind": "width", "value": 0.5, "plan": {}}},
               tmp_path / "derived.pt")
    torch.save({"fc1.weight": torch.zeros(3, 3)}, tmp_path / "w.pt")
    cfg = ExportConfig(inputs=("x:1x64",), exporter="torchscript", weights=str(tmp_path / "w.pt"))
    with pytest.raises(ModelError, match="--weights does not apply to the derived student checkpoint"):
        export(str(tmp_path / "derived.pt"), cfg, out=tmp_path / "derived.onnx")
    assert not (tmp_path / "derived.onnx").exists()


def test_pt2_exported_program(models_py, tmp_path):
    import importlib.util

    import torch
    spec = importlib.util.spec_from_file_location("m_for_pt2", models_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ep = torch.export.export(mod.mlp().eval(), (torch.randn(1, 64),))
    torch.export.save(ep, tmp_path / "mlp.pt2")
    res = export(str(tmp_path / "mlp.pt2"), ExportConfig(exporter="dynamo"), out=tmp_path / "mlp.onnx")
    assert res.report.max_error_rel_to_scale <= 1e-4
    assert res.report.inputs[0]["shape"] == [1, 64]


def test_reexport_is_byte_identical(models_py, tmp_path):
    outs = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        outs.append(_run(models_py, tmp_path / sub, "resnet", ["input:1x1x28x28"]).artifact.path.read_bytes())
    assert outs[0] == outs[1]
