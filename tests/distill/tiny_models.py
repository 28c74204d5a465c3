"""Tiny models for the distill tests (SPECs: tests/distill/tiny_models.py:<factory>)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden: int = 32, out: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


class Stacked(nn.Module):
    """Embedding -> 4 identical residual blocks -> head: a layer stack for depth reduction."""

    def __init__(self, d: int = 24, depth: int = 4) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, d))
        self.blocks = nn.Sequential(*[Block(d) for _ in range(depth)])
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.inp(x)))


def mlp_teacher() -> nn.Module:
    torch.manual_seed(1)
    return MLP(64)


def mlp_student() -> nn.Module:
    torch.manual_seed(2)
    return MLP(16)


def five_class_student() -> nn.Module:
    return MLP(16, out=5)


def stacked() -> nn.Module:
    torch.manual_seed(3)
    return Stacked()


def embedder_teacher() -> nn.Module:
    torch.manual_seed(4)
    return MLP(32, out=8)


def embedder_student() -> nn.Module:
    torch.manual_seed(5)
    return MLP(8, out=8)


class ConvBNNet(nn.Module):
    """Conv -> BatchNorm2d -> Linear -> BatchNorm1d -> Linear: BatchNorm after both kinds of layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, stride=2)
        self.bn = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 13 * 13, 12)
        self.bn1 = nn.BatchNorm1d(12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc2(torch.relu(self.bn1(self.fc1(torch.flatten(y, 1)))))


def conv_bn_net() -> nn.Module:
    torch.manual_seed(3)
    return ConvBNNet()


class CountingMLP(MLP):
    """An MLP teacher that counts the images it has scored (to see when the trainer scores augmented batches)."""

    images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountingMLP.images += int(x.shape[0])
        return super().forward(x)


def counting_teacher() -> nn.Module:
    torch.manual_seed(1)
    return CountingMLP(64)
