"""Tiny models for the bench tests: an fp32 CNN, its static int8 (QDQ) version, and a model ORT cannot load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "calibration_data"


def build_cnn(folder: Path) -> tuple[Path, Path]:
    """A small MNIST-shaped CNN exported with torch (dynamo=False) and quantized with quantize_static."""
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    fp32 = folder / "cnn_fp32.onnx"
    torch.onnx.export(net, (torch.randn(1, 1, 28, 28),), str(fp32), dynamo=False, input_names=["input"],
                      output_names=["logits"], opset_version=17)
    onnx.checker.check_model(onnx.load(str(fp32)))
    x = np.load(DATA / "mnist_calibration.npz")["input"][:16]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": x[i: i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)

    int8 = folder / "cnn_int8.onnx"
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return fp32, int8


def build_unloadable(folder: Path) -> Path:
    """Valid ONNX that ONNX Runtime refuses to load (an op from an unknown domain)."""
    import onnx
    from onnx import helper

    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = folder / "unloadable.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def cnn_models(tmp_path_factory) -> tuple[Path, Path]:
    return build_cnn(tmp_path_factory.mktemp("bench_models"))


@pytest.fixture(scope="session")
def unloadable_model(tmp_path_factory) -> Path:
    return build_unloadable(tmp_path_factory.mktemp("bench_bad"))


@pytest.fixture(scope="session")
def eval_data() -> Path:
    return DATA / "mnist_eval.npz"
