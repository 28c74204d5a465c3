"""Voice-activity classifiers on raw 16 kHz audio chunks (`input` [N, 1, 576]: 512 samples + 64 of context, the
zoo's Silero VAD feeds) -> 2 class scores (non-speech, speech). The third task of bench/kd_gain.py."""

from __future__ import annotations

import torch
from torch import nn


class ChunkCNN(nn.Module):
    """Strided 1-D convs with BatchNorm and ReLU, global average pool, linear head."""

    def __init__(self, width: int = 32, num_classes: int = 2) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        for cin, cout, k, s in ((1, w, 9, 4), (w, 2 * w, 5, 2), (2 * w, 2 * w, 5, 2), (2 * w, 4 * w, 3, 2)):
            layers += [nn.Conv1d(cin, cout, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the zoo feeds' key
        return self.fc(self.features(input).mean(-1))


def vad_teacher() -> nn.Module:
    return ChunkCNN(width=32)


def vad_student() -> nn.Module:
    return ChunkCNN(width=10)


class MeanOf(nn.Module):
    """The mean of several networks' class scores (its state_dict: `members.K.<name>`)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return torch.stack([m(input) for m in self.members]).mean(0)


def vad_ensemble() -> nn.Module:
    """Four `vad_teacher` networks averaged (226k parameters): a teacher that generalises better than one."""
    return MeanOf([vad_teacher() for _ in range(4)])
