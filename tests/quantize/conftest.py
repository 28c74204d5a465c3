"""Fixtures for the quantize tests (models and data from quantize_helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from quantize_helpers import DATA, DepthwiseNet, export, skew_depthwise_channels, train
from torch import nn


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory) -> dict[str, Path]:
    """calibration (64 samples) and eval (300 samples, with labels) .npz files."""
    d = tmp_path_factory.mktemp("mnist")
    c = np.load(DATA / "mnist_calibration.npz")
    e = np.load(DATA / "mnist_eval.npz")
    np.savez(d / "calib.npz", input=c["input"][:64], labels=c["labels"][:64])
    np.savez(d / "eval.npz", input=e["input"][:300], labels=e["labels"][:300])
    return {"calib": d / "calib.npz", "eval": d / "eval.npz"}


@pytest.fixture(scope="session")
def depthwise_onnx(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dw")
    torch.manual_seed(0)  # the initial weights too: the model must not depend on which tests ran before
    model = skew_depthwise_channels(train(DepthwiseNet()))
    return export(model, d / "dw.onnx")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """An untrained tiny CNN (fast to quantize; for I/O and error-path tests)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                      nn.Linear(8 * 7 * 7, 10))
    return export(m, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


