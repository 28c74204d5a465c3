"""Architectures built in code for tests and benchmarks (torchvision is not available here).

resnet18_like, mobilenetv2_like, bert_like (encoder), depthwise_net, concat_net, mlp, tiny_transformer.
Every factory returns an nn.Module in eval mode-ready state with deterministic initialization when
`torch.manual_seed` is set by the caller.
"""

from __future__ import annotations

import math

import torch
from torch import nn


# ResNet-18-like ------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class ResNet18Like(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers = []
        cin = w
        for i, cout in enumerate([w, 2 * w, 4 * w, 8 * w]):
            layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet18_like(num_classes: int = 1000) -> nn.Module:
    return ResNet18Like(num_classes)


# MobileNetV2-like ----------------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Like(nn.Module):
    # (expand, channels, repeats, stride) as in Sandler et al. 2018
    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 cfg: list[tuple[int, int, int, int]] | None = None, stem_stride: int = 2, last: int = 1280) -> None:
        super().__init__()
        c = int(32 * width_mult)
        feats: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6()]
        for t, ch, n, s in cfg or self.CFG:
            out = int(ch * width_mult)
            for i in range(n):
                feats.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        feats += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*feats)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenetv2_like(num_classes: int = 1000) -> nn.Module:
    return MobileNetV2Like(num_classes)


def mnist_depthwise() -> nn.Module:
    """A small MobileNetV2-style net for 1x28x28 MNIST (depthwise convs and inverted residuals)."""
    cfg = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2)]
    return MobileNetV2Like(num_classes=10, width_mult=0.5, in_channels=1, cfg=cfg, stem_stride=1, last=64)


# Transformer encoders ------------------------------------------------------------------------------------
class EncoderLayer(nn.Module):
    """Post-LN BERT layer with explicit Q/K/V projections (so the exported graph shows the head structure)."""

    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, ffn)
        self.ff2 = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, s, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(torch.nn.functional.gelu(self.ff1(x))))


class BertLike(nn.Module):
    """Token ids -> embeddings -> encoder layers -> [CLS] pooled logits."""

    def __init__(self, vocab: int = 30522, hidden: int = 384, layers: int = 6, heads: int = 6, ffn: int = 1536,
                 max_len: int = 512, num_classes: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_len, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, ffn) for _ in range(layers)])
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.ln(self.tok(input_ids) + self.pos(pos))
        for layer in self.layers:
            x = layer(x)
        return self.head(x[:, 0])


def bert_like() -> nn.Module:
    return BertLike()


class TinyTransformer(nn.Module):
    """A small ViT-style classifier for 1x28x28 MNIST: 7x7 patches -> 2 encoder layers -> mean pool -> fc."""

    def __init__(self, hidden: int = 64, layers: int = 2, heads: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, hidden, 7, 7)
        self.pos = nn.Parameter(torch.zeros(1, 16, hidden))
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, 2 * hidden) for _ in range(layers)])
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.fc(x.mean(1))


def tiny_transformer() -> nn.Module:
    return TinyTransformer()


class SeqEncoder(nn.Module):
    """Float sequence (batch, seq, features) -> per-sequence embedding; dynamic sequence length."""

    def __init__(self, features: int = 16, hidden: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(features, hidden)
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, 2 * hidden) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x)
        return x.mean(1)


def seq_encoder() -> nn.Module:
    return SeqEncoder()


# Small graph-shape fixtures ------------------------------------------------------------------------------
class ConcatNet(nn.Module):
    """Two conv branches concatenated on channels, then Flatten -> Linear (1x28x28 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        return self.fc(torch.flatten(self.c(y), 1))


def concat_net() -> nn.Module:
    return ConcatNet()


class MLP(nn.Module):
    def __init__(self, inp: int = 784, hidden: int = 256, out: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inp, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def mlp() -> nn.Module:
    return MLP()
