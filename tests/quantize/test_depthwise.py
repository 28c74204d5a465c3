"""A depthwise net quantized per-tensor without equalization collapses; with edgecompress defaults it does not."""

from __future__ import annotations

import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from quantize_helpers import accuracy

from edgecompress.data import load_data
from edgecompress.quantize import QuantizeConfig, quantize
from edgecompress.quantize.calibration import FeedReader
from edgecompress.quantize.equalize import equalize


def _ort_per_tensor(src, dest, calib):
    quantize_static(str(src), str(dest), FeedReader(load_data(calib)), quant_format=QuantFormat.QDQ,
                    per_channel=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dest


def test_per_tensor_without_equalization_collapses_defaults_do_not(depthwise_onnx, mnist_small, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # ORT's quantize_static leaves augmented_model.onnx in the cwd
    fp32 = accuracy(depthwise_onnx, mnist_small["eval"])
    assert fp32 > 0.8
    plain = accuracy(_ort_per_tensor(depthwise_onnx, tmp_path / "pt.onnx", mnist_small["calib"]), mnist_small["eval"])
    assert plain < 0.5 * fp32, f"per-tensor without equalization should collapse: {plain:.3f} vs fp32 {fp32:.3f}"

    res = quantize(depthwise_onnx, QuantizeConfig(allow_slower=True), out=tmp_path / "ec.onnx", calibration=mnist_small["calib"],
                   eval_data=mnist_small["eval"])
    ours = accuracy(tmp_path / "ec.onnx", mnist_small["eval"])
    assert ours >= 0.97 * fp32, (ours, fp32, res.report.to_dict())
    assert res.report.equalization["depthwise"] is True
    assert res.report.rounding["layers"] >= 1 and res.report.rounding["reason"], res.report.rounding


def test_equalization_rescues_per_tensor(depthwise_onnx, mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = onnx.load(str(depthwise_onnx))
    eq_model, info = equalize(m)
    assert info.pairs >= 1
    onnx.save(eq_model, str(tmp_path / "eq.onnx"))
    fp32 = accuracy(depthwise_onnx, mnist_small["eval"])
    assert accuracy(tmp_path / "eq.onnx", mnist_small["eval"]) == fp32  # function preserved
    per_tensor = accuracy(_ort_per_tensor(tmp_path / "eq.onnx", tmp_path / "eqpt.onnx", mnist_small["calib"]),
                          mnist_small["eval"])
    assert per_tensor >= 0.95 * fp32
