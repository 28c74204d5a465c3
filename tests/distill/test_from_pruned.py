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
    prune(str(onnx_path), PruneConfig(ratio=ratio, round_to=1, max_drop=1.0), out=str(pruned), calibration=str(calib))
    return weights, pruned


@pytest.fixture(scope="module")
def pruned_model(tmp_path_factory, mnist_small):
    """(weights, pruned .onnx) per (factory, exporter, ratio), built once per module."""
    cache: dict[tuple, tuple] = {}

    def get(factory: str, exporter: str, ratio: float = 0.4):
        key = (factory, exporter, ratio)
        if key not in cache:
            cache[key] = _pruned(tmp_path_factory.mktemp("pruned"), factory, exporter, mnist_small[1], ratio)
        return cache[key]

    return get


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = make_session(str(path), threads=1)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_resnet_teacher_maps_back_exactly(mnist_small, tmp_path, pruned_model, exporter):
    train, val = mnist_small
    factory = f"{MNIST}:teacher"
    weights, pruned = pruned_model(factory, exporter)
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


def test_distill_from_pruned_trains_and_reloads(mnist_small, tmp_path, pruned_model):
    train, val = mnist_small
    factory = f"{MNIST}:teacher"
    weights, pruned = pruned_model(factory, "torchscript", ratio=0.5)
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


def test_mlp_teacher_maps_back(mnist_small, tmp_path, pruned_model):
    train, val = mnist_small
    factory = spec("mlp_teacher")
    weights, pruned = pruned_model(factory, "dynamo", ratio=0.5)
    teacher = load_factory(factory)
    teacher.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.from_numpy(np.load(val)["input"][:5])
    student, _, _ = pruned_student(teacher, pruned, {"x": x})
    assert student.body[1].out_features < 64 and student.head.in_features == student.body[1].out_features
    with torch.no_grad():
        ours = student.eval()(x).numpy()
    ref = _ort(pruned, x.numpy())
    assert np.abs(ours - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())


def test_refusals(mnist_small, tmp_path, pruned_model):
    train, val = mnist_small
    _, pruned_mlp = pruned_model(spec("mlp_teacher"), "torchscript")
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


def test_cli_refuses_a_quantized_model_with_one_line(mnist_small, tmp_path, pruned_model):
    train, val = mnist_small
    from edgecompress.quantize import QuantizeConfig, quantize

    weights, pruned = pruned_model(spec("mlp_teacher"), "torchscript")
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


def test_folded_batchnorms_keep_training_mode_close(mnist_small, tmp_path, pruned_model):
    """Exporters fold BatchNorm into the conv; the mapped BatchNorms are rebuilt from data, so a training-mode
    forward (batch statistics) on the calibration batch equals the eval-mode forward (and the pruned model)."""
    import copy

    train, val = mnist_small
    factory = f"{MNIST}:teacher"
    weights, pruned = pruned_model(factory, "torchscript", ratio=0.5)
    teacher = load_factory(factory)
    teacher.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.from_numpy(np.load(train)["input"][:64])
    student, _, notes = pruned_student(teacher, pruned, {"x": x})
    assert any("rebuilt with the statistics of 64" in n for n in notes)
    with torch.no_grad():
        ev = student.eval()(x)
        tr = copy.deepcopy(student).train()(x)
    assert float((tr - ev).abs().max()) <= 1e-3 * float(ev.abs().max())


def _hand_pruned(tmp_path, *, scale_output: float = 1.0):
    """The pruned model written by hand from a teacher with BatchNorm after a conv and after a linear layer:
    BatchNormalization nodes kept, fc1 as Gemm with transB=0, fc2 as MatMul + Add (what other exporters emit)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    teacher = load_factory(spec("conv_bn_net"))
    g = torch.Generator().manual_seed(0)
    for bn in (teacher.bn, teacher.bn1):  # non-trivial BatchNorm statistics and affine parameters
        n = bn.num_features
        bn.running_mean = torch.randn(n, generator=g) * 0.3
        bn.running_var = torch.rand(n, generator=g) + 0.5
        bn.weight.data = torch.rand(n, generator=g) + 0.5
        bn.bias.data = torch.randn(n, generator=g) * 0.1
    torch.save(teacher.state_dict(), tmp_path / "cbn.pt")
    keep_c, keep_u = [0, 2, 3, 5], [0, 1, 3, 4, 6, 8, 9, 11]
    sd = {k: v.detach().numpy() for k, v in teacher.state_dict().items()}
    flat = [c * 169 + i for c in keep_c for i in range(169)]
    inits = {
        "cw": sd["conv.weight"][keep_c], "cb": sd["conv.bias"][keep_c],
        "s0": sd["bn.weight"][keep_c], "b0": sd["bn.bias"][keep_c], "m0": sd["bn.running_mean"][keep_c],
        "v0": sd["bn.running_var"][keep_c],
        "w1": sd["fc1.weight"][keep_u][:, flat].T.copy(), "b1": sd["fc1.bias"][keep_u],
        "s1": sd["bn1.weight"][keep_u], "b1n": sd["bn1.bias"][keep_u], "m1": sd["bn1.running_mean"][keep_u],
        "v1": sd["bn1.running_var"][keep_u],
        "w2": sd["fc2.weight"][:, keep_u].T.copy(), "b2": sd["fc2.bias"], "k": np.float32(scale_output),
    }
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s0", "b0", "m0", "v0"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=0),
        helper.make_node("BatchNormalization", ["h", "s1", "b1n", "m1", "v1"], ["hn"], epsilon=1e-5),
        helper.make_node("Relu", ["hn"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["ob"]),
        helper.make_node("Mul", ["ob", "k"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"hand{scale_output}.onnx"
    onnx.save(model, path)
    return teacher, path


def test_kept_batchnorms_gemm_transb0_and_matmul_add(mnist_small, tmp_path):
    teacher, path = _hand_pruned(tmp_path)
    x = torch.from_numpy(np.load(mnist_small[1])["input"][:16])
    student, plan, _ = pruned_student(teacher, path, {"x": x})
    assert (student.conv.out_channels, student.bn.num_features) == (4, 4)
    assert (student.fc1.in_features, student.fc1.out_features, student.bn1.num_features) == (4 * 169, 8, 8)
    assert student.fc2.in_features == 8 and set(plan["modules"]) == {"conv", "bn", "fc1", "bn1", "fc2"}
    with torch.no_grad():
        ours = student.eval()(x).numpy()
    ref = _ort(path, x.numpy())
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


def test_a_graph_that_computes_something_else_is_refused(mnist_small, tmp_path):
    teacher, path = _hand_pruned(tmp_path, scale_output=1.5)  # same layers, but the output is scaled
    x = {"x": torch.from_numpy(np.load(mnist_small[1])["input"][:8])}
    with pytest.raises(UnsupportedError, match="differs from the pruned model by"):
        pruned_student(teacher, path, x)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_batchnorm_after_linear_through_real_exports(mnist_small, tmp_path, pruned_model, exporter):
    train, val = mnist_small
    weights, pruned = pruned_model(spec("conv_bn_net"), exporter, ratio=0.4)
    teacher = load_factory(spec("conv_bn_net"))
    teacher.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.from_numpy(np.load(train)["input"][:32])
    student, _, _ = pruned_student(teacher, pruned, {"x": x})
    assert student.bn1.num_features == student.fc1.out_features < 12
    with torch.no_grad():
        ours = student.eval()(x).numpy()
    ref = _ort(pruned, x.numpy())
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
