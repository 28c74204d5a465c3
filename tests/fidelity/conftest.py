"""Fixtures for the fidelity tests: a two-output MNIST model whose second output mixes scales, small real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

DATA = Path(__file__).resolve().parents[2] / "calibration_data"


class TwoHead(nn.Module):
    """A small MNIST CNN with two outputs: class logits, and a 4-channel map whose channels differ in scale by
    10^6 (1000x and 0.001x: box coordinates beside probabilities). Per-tensor int8 of that map keeps the large
    channels and zeroes the small ones: a cosine over the whole tensor stays ~1 while half of it is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(32 * 7 * 7, 10)
        self.head = nn.Conv2d(32, 4, 1)
        self.register_buffer("mix", torch.tensor([1000.0, 1000.0, 1e-3, 1e-3]).view(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x)
        return self.fc(torch.flatten(f, 1)), self.head(f) * self.mix


@pytest.fixture(scope="session")
def two_head(tmp_path_factory) -> dict[str, Path]:
    """{'model', 'calib', 'eval'}: the trained TwoHead as ONNX (outputs logits, mixed), 64 calibration and 200
    labelled eval samples of the shipped MNIST splits (disjoint)."""
    d = tmp_path_factory.mktemp("two_head")
    torch.manual_seed(0)
    z = np.load(DATA / "mnist_train.npz")
    x, y = torch.tensor(z["input"][:2000]), torch.tensor(z["labels"][:2000])
    m = TwoHead()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for i in range(0, len(x), 64):
        loss = nn.functional.cross_entropy(m(x[i:i + 64])[0], y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.onnx.export(m.eval(), torch.zeros(1, 1, 28, 28), str(d / "two.onnx"), input_names=["input"],
                      output_names=["logits", "mixed"], dynamo=False, opset_version=17)
    c, e = np.load(DATA / "mnist_calibration.npz"), np.load(DATA / "mnist_eval.npz")
    np.savez(d / "calib.npz", input=c["input"][:64])
    np.savez(d / "eval.npz", input=e["input"][:200], labels=e["labels"][:200])
    return {"model": d / "two.onnx", "calib": d / "calib.npz", "eval": d / "eval.npz"}
