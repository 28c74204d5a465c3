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
