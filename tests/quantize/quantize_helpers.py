"""Helpers for the quantize tests: tiny models built in code, trained briefly on the shipped MNIST data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA = Path(__file__).resolve().parents[2] / "calibration_data"


class DepthwiseNet(nn.Module):
    """conv -> depthwise conv -> pointwise conv (BN + ReLU each) -> fc, for 1x28x28 MNIST."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pw(self.dw(self.stem(x))), 1))


def train(model: nn.Module, n: int = 3000, epochs: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    z = np.load(DATA / "mnist_train.npz")
    x, y = torch.tensor(z["input"][:n]), torch.tensor(z["labels"][:n])
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def export(model: nn.Module, path: Path, shape=(1, 1, 28, 28)) -> Path:
    torch.onnx.export(model.eval(), torch.randn(*shape), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=False, opset_version=17)
    return path


def skew_depthwise_channels(model: DepthwiseNet, seed: int = 0) -> DepthwiseNet:
    """Rescale the depthwise conv's output channels by factors spanning 4 decades and undo it in the next conv.

    ReLU(s x) = s ReLU(x) for s > 0, so the function is unchanged; the per-channel weight ranges of the depthwise
    conv become wildly different (the situation of MobileNets after BatchNorm folding, Nagel et al. 2019).
    """
    rng = np.random.default_rng(seed)
    s = torch.tensor(rng.permutation(np.logspace(-3, 1, 16)), dtype=torch.float32)
    with torch.no_grad():
        bn = model.dw[1]
        bn.weight.mul_(s)
        bn.bias.mul_(s)
        model.pw[0].weight.div_(s.view(1, -1, 1, 1))
    return model


def accuracy(model_path: Path, eval_npz: Path) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    z = np.load(eval_npz)
    pred = [int(s.run(None, {"input": z["input"][i : i + 1]})[0].argmax()) for i in range(len(z["labels"]))]
    return float((np.array(pred) == z["labels"]).mean())
