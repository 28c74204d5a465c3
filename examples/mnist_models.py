"""The demo's MNIST teacher and student (1x28x28 inputs, 10 classes).

`teacher()` is a ResNet-like CNN with BatchNorm and residual adds; `student()` has under 1/8 of its
parameters. Both are used by `edgecompress convert` (the built-in demo) and the tests.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


def _stage(channels: int, blocks: int) -> nn.Module:
    """One residual block (the original layout, whose state_dict keys the shipped weights use) or a stack."""
    if blocks == 1:
        return ResidualBlock(channels)
    return nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])


class MnistResNet(nn.Module):
    """stem -> [block] -> downsample -> [block] -> GAP -> fc."""

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 1, blocks: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = _stage(width, blocks)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.layer2 = _stage(2 * width, blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class MnistStudent(nn.Module):
    """A small plain CNN: two conv stages and a linear head."""

    def __init__(self, width: int = 8, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(2 * width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def teacher() -> nn.Module:
    return MnistResNet(width=32)


def student() -> nn.Module:
    return MnistStudent(width=8)


def teacher_deep() -> nn.Module:
    """The built-in demo's teacher: width 48, two residual blocks per stage (459k parameters, 139 M MACs). Its
    weights, examples/weights/mnist_teacher.pt, come from scripts/train_demo_teacher.py (seed 0)."""
    return MnistResNet(width=48, blocks=2)


def digits_teacher() -> nn.Module:
    return MnistResNet(width=16)



class MnistSmallCNN(nn.Module):
    """Two conv stages, a 2x2 average pool to 3x3 and a linear head (exports with either ONNX exporter)."""

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(2 * w * 3 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def student_small() -> nn.Module:
    """7.7k parameters (1/14.5 of the teacher's 112k): the student of bench/distill_bench.py."""
    return MnistSmallCNN(width=16)


class Ensemble(nn.Module):
    """Mean of the members' logits: a teacher made of several independently trained networks (Hinton et al.
    2015 distil an ensemble into one small model). Its state_dict holds every member (`members.K.<name>`)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def teacher_ensemble(members: int = 4) -> nn.Module:
    """Four `teacher()` networks averaged (448k parameters): the teacher of bench/distill_bench.py."""
    return Ensemble([teacher() for _ in range(members)])
