"""`quantize --weights int4` end to end (edgecompress/quantize/lowbit.py) on a real trained model, and its bad
input: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from quantize_helpers import accuracy, export, train
from test_cli import _invoke

from edgecompress.quantize import QuantizeConfig, quantize


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    """A trained MNIST MLP 784-256-256-10: its Linear layers export as Gemm (2-D input)."""
    import torch

    from examples.zoo import MLP

    torch.manual_seed(0)
    return export(train(MLP(), n=3000, epochs=2), tmp_path_factory.mktemp("mlp") / "mlp.onnx")


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_int4_keeps_a_trained_mlp_accurate_and_small(mlp_onnx, mnist_small, tmp_path):
    out = tmp_path / "mlp.int4.onnx"
    res = quantize(mlp_onnx, QuantizeConfig(weights="int4", max_drop=0.02, allow_slower=True), out=out,
                   calibration=mnist_small["calib"], eval_data=mnist_small["eval"])
    r = res.report
    ops = _ops(out)
    assert ops.count("MatMulNBits") == 3 and "Gemm" not in ops
    assert r.layers["int4"] + r.layers["int8"] == 3
    assert r.algorithm in ("rtn", "clip", "gptq") and r.block_size in (32, 64, 128)
    # the chosen algorithm is never worse than plain rounding on the calibration layers
    assert r.layer_error["mean_rel_output_error"] <= r.layer_error["mean_rel_output_error_rtn"] + 1e-12
    assert r.weight_bytes["ratio"] < 0.3
    assert os.path.getsize(out) < 0.3 * os.path.getsize(mlp_onnx)
    fp32, int4 = accuracy(mlp_onnx, mnist_small["eval"]), accuracy(out, mnist_small["eval"])
    assert fp32 > 0.85
    assert int4 >= fp32 - 0.02, (fp32, int4)
    labels = [c["label"] for c in r.candidates]
    assert any("rtn" in x for x in labels) and any("gptq" in x for x in labels)
    assert r.speed["measured"] and r.speed["speedup"] > 0


def test_explicit_choices_are_kept(mlp_onnx, mnist_small, tmp_path):
    out = tmp_path / "rtn.onnx"
    r = quantize(mlp_onnx, QuantizeConfig(weights="int4", algorithm="rtn", block_size=64, symmetric=True,
                                          max_drop=0.5, allow_slower=True),
                 out=out, calibration=mnist_small["calib"], eval_data=mnist_small["eval"]).report
    assert (r.algorithm, r.block_size, r.symmetric) == ("rtn", 64, True)
    node = next(n for n in onnx.load(str(out)).graph.node if n.op_type == "MatMulNBits")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["block_size"] == 64 and attrs["bits"] == 4
    assert len(node.input) == 3 or node.input[3] == ""  # symmetric: no zero points


def _conv_only(path):
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"], name="conv")], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 26, 26])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bad_input_exits_2_with_one_line(mlp_onnx, mnist_small, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "o.onnx"
    int4 = tmp_path / "int4.onnx"
    quantize(mlp_onnx, QuantizeConfig(weights="int4", algorithm="rtn", block_size=32, symmetric=False,
                                      max_drop=0.5, allow_slower=True),
             out=int4, calibration=mnist_small["calib"], eval_data=mnist_small["eval"])
    cases = {
        "block": ([str(mlp_onnx), "--weights", "int4", "--block-size", "48"], "--block-size"),
        "conv": ([str(_conv_only(tmp_path / "conv.onnx")), "--weights", "int4"], "MatMul/Gemm"),
        "already": ([str(int4), "--weights", "int4"], "already quantized"),
        "int8 flag": ([str(mlp_onnx), "--weights", "int4", "--mode", "static"], "int8 only"),
        "int4 flag": ([str(mlp_onnx), "--block-size", "32"], "int4 only"),
        "fp16 on x86": ([str(mlp_onnx), "--precision", "fp16", "--target", "host"], "precision fp16 is for targets"),
        "fp16 and int4": ([str(mlp_onnx), "--precision", "fp16", "--weights", "int4"], "pick one"),
    }
    for name, (args, needle) in cases.items():
        res = _invoke(["quantize", *args, "--calibration", str(mnist_small["calib"]), "--out", str(out)], cwd)
        assert res.exit_code == 2, (name, res.output)
        lines = [x for x in res.output.strip().splitlines() if x.strip()]
        assert needle in res.output, (name, res.output)
        assert "Traceback" not in res.output and len(lines) <= 3, (name, res.output)
        assert not out.exists() and os.listdir(cwd) == [], name


def test_json_report(mlp_onnx, mnist_small, tmp_path):
    out = tmp_path / "j.onnx"
    res = _invoke(["quantize", str(mlp_onnx), "--weights", "int4", "--algorithm", "clip", "--block-size", "32",
                   "--calibration", str(mnist_small["calib"]), "--eval", str(mnist_small["eval"]), "--max-drop",
                   "0.5", "--allow-slower", "--out", str(out), "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    rep = d["report"]
    assert rep["mode"] == "weight-only" and rep["algorithm"] == "clip"
    assert rep["size_mb"]["int4"] < rep["size_mb"]["fp32"]
