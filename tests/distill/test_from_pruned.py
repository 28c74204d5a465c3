"""A model pruned by `edgecompress prune` as the student's starting point: mapped back onto the teacher's class,
checked against the pruned model in ONNX Runtime, trained, reloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgecompress.cli import cli
from edgecompress.distill import DistillConfig, distill, load_student
from edgecompress.distill.from_pruned import pruned_student
from edgecompress.distill.models import load_factory
from edgecompress.errors import UnsupportedError
from edgecompress.export import ExportConfig, export
from edgecompress.onnxgraph.runtime import make_session
from edgecompress.prune import PruneConfig, prune

from .conftest import MNIST, spec


def _pruned(tmp_path, factory: str, exporter: str, calib, ratio: float = 0.4):
    torch.manual_seed(0)
    model = load_factory(factory)
    weights = tmp_path / "teacher.pt"
    torch.save(model.state_dict(), weights)
    onnx_path = tmp_path / f"teacher.{exporter}.onnx"
    export(factory, ExportConfig(inputs=("x:1x1x28x28",), dynamic=("x:0=batch",), weights=str(weights),
                                 exporter=exporter), out=onnx_path)
    pruned = tmp_path / f"pruned.{exporter}.onnx"
    prune(str(onnx_path), PruneConfig(ratio=ratio, round_to=1), out=str(pruned), calibration=str(calib))
    return weights, pruned


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = make_session(str(path), threads=1)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_resnet_teacher_maps_back_exactly(mnist_small, tmp_path, exporter):
    train, val = mnist_small
    factory = f"{MNIST}:teacher"
    weights, pruned = _pruned(tmp_path, factory, exporter, val)
    teacher = load_factory(factory)
    teacher.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.from_numpy(np.load(val)["input"][:6])
    student, plan, notes = pruned_student(teacher, pruned, {"x": x[:4]})
    t_params = sum(p.numel() for p in teacher.parameters())
    s_params = sum(p.numel() for p in student.parameters())
    assert s_params < 0.8 * t_params
    student.eval()
    with torch.no_grad():
        ours = student(x).numpy()
    ref = _ort(pruned, x.numpy())
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
    assert type(student) is type(teacher) and "mapped from pruned" in notes[0]
    assert plan["modules"]["stem.0"]["out"] == list(range(student.stem[0].out_channels))


def test_distill_from_pruned_trains_and_reloads(mnist_small, tmp_path):
    train, val = mnist_small
    factory = f"{MNIST}:teacher"
    weights, pruned = _pruned(tmp_path, factory, "torchscript", val, ratio=0.5)
    out = tmp_path / "s.pt"
    cfg = DistillConfig(teacher=factory, teacher_weights=str(weights), student_from_pruned=str(pruned), epochs=1,
                        batch_size=32, max_samples=96, alpha=0.9)
    r = distill(cfg, data=train, val=val, out=out)
    assert any("mapped from pruned" in n for n in r.report.notes)
    assert r.report.student["params"] < 0.5 * r.report.teacher["params"]
    ck = torch.load(out, weights_only=True)
    assert ck["derived"]["kind"] == "pruned" and ck["definition"].startswith("derived:pruned=")
    student = load_student(out)
    x = torch.from_numpy(np.load(val)["input"][:4])
    with torch.no_grad():
        assert student.eval()(x).shape == (4, 10)
    assert sum(p.numel() for p in student.parameters()) == r.report.student["params"]


def test_mlp_teacher_maps_back(mnist_small, tmp_path):
    train, val = mnist_small
    factory = spec("mlp_teacher")
    weights, pruned = _pruned(tmp_path, factory, "dynamo", val, ratio=0.5)
    teacher = load_factory(factory)
    teacher.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.from_numpy(np.load(val)["input"][:5])
    student, _, _ = pruned_student(teacher, pruned, {"x": x})
    assert student.body[1].out_features < 64 and student.head.in_features == student.body[1].out_features
    with torch.no_grad():
        ours = student.eval()(x).numpy()
    ref = _ort(pruned, x.numpy())
    assert np.abs(ours - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())


def test_refusals(mnist_small, tmp_path):
    train, val = mnist_small
    _, pruned_mlp = _pruned(tmp_path, spec("mlp_teacher"), "torchscript", val)
    teacher = load_factory(f"{MNIST}:teacher")
    x = {"x": torch.from_numpy(np.load(val)["input"][:2])}
    with pytest.raises(UnsupportedError, match="cannot map the pruned model back.*Conv/Linear layers"):
        pruned_student(teacher, pruned_mlp, x)
    from edgecompress.errors import InputError

    with pytest.raises(InputError, match="pruned model not found"):
        pruned_student(teacher, tmp_path / "nope.onnx", x)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        pruned_student(teacher, bad, x)


def test_cli_refuses_a_quantized_model_with_one_line(mnist_small, tmp_path):
    train, val = mnist_small
    from edgecompress.quantize import QuantizeConfig, quantize

    weights, pruned = _pruned(tmp_path, spec("mlp_teacher"), "torchscript", val)
    q = tmp_path / "q.onnx"
    quantize(str(pruned), QuantizeConfig(allow_slower=True), out=str(q), calibration=str(val))
    before = sorted(p.name for p in tmp_path.iterdir())
    r = CliRunner().invoke(cli, ["distill", "--teacher", spec("mlp_teacher"), "--teacher-weights", str(weights),
                                 "--student-from-pruned", str(q), "--data", str(train), "--out",
                                 str(tmp_path / "s.pt"), "--epochs", "1"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "it is quantized" in lines[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_exactly_one_student_source():
    from edgecompress.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of"):
        DistillConfig(teacher=f"{MNIST}:teacher", student=f"{MNIST}:student", student_from_pruned="p.onnx")
    with pytest.raises(ConfigError, match="student_weights"):
        DistillConfig(teacher=f"{MNIST}:teacher", student_from_pruned="p.onnx", student_weights="w.pt")
