"""`edgecompress quantize` CLI: --help, --json, and bad input -> exit 2 with one line, nothing left behind."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from edgecompress.cli import cli

FLAGS = ["--calibration", "--out", "--target", "--eval", "--metric", "--max-drop", "--mode", "--method",
         "--per-channel", "--per-tensor", "--format", "--activation-type", "--exclude", "--allow-slower", "--json"]


def _invoke(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args)
    finally:
        os.chdir(old)


def test_help_explains_every_flag():
    res = CliRunner().invoke(cli, ["quantize", "--help"])
    assert res.exit_code == 0
    for flag in FLAGS:
        assert flag in res.output, flag


@pytest.fixture()
def cwd(tmp_path):
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_cases(tmp_path, tiny_onnx):
    rng = np.random.default_rng(0)
    good = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    nan = good.copy()
    nan[1, 0, 3, 3] = np.nan
    inf = good.copy()
    inf[2, 0, 0, 0] = np.inf
    from onnxruntime.quantization import quantize_dynamic

    quantized = tmp_path / "already.onnx"
    quantize_dynamic(str(tiny_onnx), str(quantized))
    return {
        "names": (tiny_onnx, _npz(tmp_path / "names.npz", image=good, mask=good), "input names"),
        "shape": (tiny_onnx, _npz(tmp_path / "shape.npz", input=good[:, :, :14, :14]), "shape"),
        "dtype": (tiny_onnx, _npz(tmp_path / "dtype.npz", input=good.astype(np.int32)), "dtype"),
        "nan": (tiny_onnx, _npz(tmp_path / "nan.npz", input=nan), "NaN"),
        "inf": (tiny_onnx, _npz(tmp_path / "inf.npz", input=inf), "Inf"),
        "empty": (tiny_onnx, _npz(tmp_path / "empty.npz", input=good[:0]), "empty"),
        "quantized": (quantized, _npz(tmp_path / "ok.npz", input=good), "already quantized"),
    }


@pytest.mark.parametrize("case", ["names", "shape", "dtype", "nan", "inf", "empty", "quantized"])
def test_bad_input_exits_2_one_line_nothing_left(case, tmp_path, tiny_onnx, cwd, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    model, data, words = _bad_cases(tmp_path, tiny_onnx)[case]
    out = tmp_path / "out.onnx"
    res = _invoke(["quantize", str(model), "--calibration", str(data), "--out", str(out)], cwd)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
    assert not out.exists()
    assert os.listdir(cwd) == []
    left = [p.name for p in (tmp_path / "tmp").iterdir() if p.is_dir() or p.suffix in (".onnx", ".data", ".json")]
    assert left == []  # private temp dirs (ORT's temp files inside) removed


def _sin_model(path):
    """MatMul -> Sin: ORT has no quantized Sin; it stays fp32 and is reported."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
                           helper.make_node("Sin", ["y"], ["z"], name="sin")], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 10])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_json_and_unquantizable_op_reported(tmp_path, cwd):
    model = _sin_model(tmp_path / "sin.onnx")
    data = _npz(tmp_path / "x.npz", x=np.random.default_rng(1).standard_normal((24, 16)).astype(np.float32))
    out = tmp_path / "sin.int8.onnx"
    res = _invoke(["quantize", str(model), "--calibration", str(data), "--out", str(out), "--allow-slower",
                   "--metric", "cosine", "--max-drop", "0.05", "--json"], cwd)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rep = doc["report"]
    assert doc["ok"] is True and out.is_file()
    assert rep["unquantizable_ops"] == {"Sin": 1}
    assert any("Sin" in n for n in rep["notes"])
    assert rep["census"]["total"] == 1
    assert rep["speed"]["measured"] is True and rep["speed"]["speedup"] > 0
    # 24 samples: a quarter held out for the fidelity check, the other 18 calibrate every static candidate
    assert rep["calibration"]["minmax"]["samples"] == 18 and rep["fidelity"]["samples"] == 6
    assert {c["samples"] for c in rep["calibration"].values()} == {18}
    assert os.listdir(cwd) == []


def test_bad_flag_value_exits_2(tmp_path, tiny_onnx, cwd):
    res = _invoke(["quantize", str(tiny_onnx), "--calibration", "x.npz", "--out", "o.onnx", "--max-drop", "2"], cwd)
    assert res.exit_code == 2
    assert "max_drop" in res.stderr


def test_relative_paths_resolve_against_the_callers_cwd(tmp_path, cwd):
    _sin_model(cwd / "m.onnx")
    data = cwd / "calib"
    data.mkdir()
    rng = np.random.default_rng(2)
    for i in range(24):  # a folder of .npz is read lazily: it must still be found after the stage's chdir
        np.savez(data / f"{i:03d}.npz", x=rng.standard_normal((1, 16)).astype(np.float32))
    res = _invoke(["quantize", "m.onnx", "--calibration", "calib", "--out", "m.int8.onnx", "--allow-slower",
                   "--metric", "cosine", "--max-drop", "0.05", "--mode", "static", "--format", "qdq",
                   "--activation-type", "uint8", "--method", "minmax"], cwd)
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(cwd)) == ["calib", "m.int8.onnx", "m.onnx"]
