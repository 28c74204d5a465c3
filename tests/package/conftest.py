"""Fixtures for the package tests: a small digits CNN (fp32, head fitted in closed form), its int8 QDQ version,
an untrained copy, and one release built once per session (copied per test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pkg_helpers import CALIB, DATA, EVAL, bench_report_for, lineage_for


def _export(model, path: Path) -> None:
    import torch

    model.eval()
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=False, opset_version=17)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    import torch

    from examples.mnist_models import student

    out = tmp_path_factory.mktemp("pkg-models")
    torch.manual_seed(0)
    untrained = student()
    _export(untrained, out / "untrained.onnx")
    # "training" without backprop (cheap on a busy machine): random conv features, the linear head fitted by
    # ridge regression on the digits training set (~90 % top-1 on digits_eval)
    torch.manual_seed(0)
    m = student().eval()
    d = np.load(DATA / "digits_train.npz")
    with torch.no_grad():
        f = torch.flatten(m.pool(m.features(torch.from_numpy(d["input"]))), 1).numpy().astype(np.float64)
    a = np.hstack([f, np.ones((len(f), 1))])
    w = np.linalg.solve(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ np.eye(10)[d["labels"]])
    with torch.no_grad():
        m.fc.weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)))
        m.fc.bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    _export(m, out / "fp32.onnx")

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    cal = np.load(CALIB)["input"][:32]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": cal[i:i + 1]} for i in range(len(cal))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(out / "fp32.onnx"), str(out / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    for leftover in out.glob("*-inferred.onnx"):
        leftover.unlink()
    return {"fp32": out / "fp32.onnx", "int8": out / "int8.onnx", "untrained": out / "untrained.onnx"}


@pytest.fixture(scope="session")
def built_release(models, tmp_path_factory) -> Path:
    """One release (folder + tarball) of the int8 model for the host, reproducible (bench report given)."""
    from edgecompress.package import PackageConfig, package

    root = tmp_path_factory.mktemp("pkg-release")
    package(models["int8"], PackageConfig(name="digits", version="1.0.0"), out=root / "release", target="host",
            baseline=models["fp32"], eval_data=EVAL, calibration=CALIB, lineage=lineage_for(models),
            bench_report=bench_report_for(models["int8"]))
    return root


@pytest.fixture
def release_copy(built_release, tmp_path) -> tuple[Path, Path]:
    """(folder, tarball) copies a test may tamper with."""
    folder = tmp_path / "release"
    shutil.copytree(built_release / "release", folder)
    tar = tmp_path / "release.tar.gz"
    shutil.copyfile(built_release / "release.tar.gz", tar)
    return folder, tar
