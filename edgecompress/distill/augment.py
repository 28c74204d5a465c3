"""Training-time augmentation of image inputs, applied to the batch that teacher and student both see.

The random parameters of epoch e, step k come from a generator seeded by (seed, e, k) alone, so a resumed run,
a rerun and every DDP rank see the same ones. Only 4-D float tensors (NCHW images) change; token ids, vectors
and masks pass through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

from .config import DistillConfig


def _generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 100_003 + step)


def _each_image(x: list[torch.Tensor], fn: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    return [fn(t) if t.dim() == 4 and t.is_floating_point() else t for t in x]


_P = TypeVar("_P")


def _per_batch(draw: Callable[[int], _P]) -> Callable[[int], _P]:
    """Random parameters drawn once per batch size: several image inputs of one sample get the same transform."""
    cache: dict[int, _P] = {}
    return lambda n: cache[n] if n in cache else cache.setdefault(n, draw(n))


def augment_shift(x: list[torch.Tensor], shift: int, seed: int, epoch: int, step: int) -> list[torch.Tensor]:
    """Random translation by up to `shift` whole pixels (edge-replicated)."""
    g = _generator(seed, epoch, step)
    offsets = _per_batch(lambda n: torch.randint(0, 2 * shift + 1, (n, 2), generator=g))
    return _each_image(x, lambda t: translate(t, offsets(t.shape[0]), shift))


def translate(t: torch.Tensor, offsets: torch.Tensor, shift: int) -> torch.Tensor:
    """Crop each NCHW image from its edge-replicated `shift`-pixel border at (row, column) `offsets` in
    [0, 2 * shift]: a translation by offsets - shift whole pixels."""
    n, c, h, w = t.shape
    padded = F.pad(t, (shift, shift, shift, shift), mode="replicate")
    off = offsets.to(t.device)
    rows = (off[:, :1] + torch.arange(h, device=t.device))[:, None, :, None].expand(n, c, h, w + 2 * shift)
    cols = (off[:, 1:] + torch.arange(w, device=t.device))[:, None, None, :].expand(n, c, h, w)
    return torch.gather(torch.gather(padded, 2, rows), 3, cols)


def augment_affine(x: list[torch.Tensor], *, rotate: float, scale: float, shift: float, seed: int, epoch: int,
                   step: int) -> list[torch.Tensor]:
    """One random affine warp per image: rotation up to +-`rotate` degrees, zoom up to +-`scale` (fraction),
    translation up to +-`shift` pixels; bilinear, edge-replicated."""
    g = _generator(seed, epoch, step)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ang = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.radians(rotate)
        zoom = 1 + (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * scale
        move = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * shift
        return ang, zoom, move

    params = _per_batch(draw)
    return _each_image(x, lambda t: warp(t, *params(t.shape[0])))


def warp(t: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, move: torch.Tensor, *,
         padding: str = "border") -> torch.Tensor:
    """Warp NCHW images: per image a rotation by `angle` (radians), a zoom, and a translation `move` = (rows,
    columns) in pixels; bilinear, edge-replicated (`padding`: grid_sample's padding mode)."""
    n, c, h, w = t.shape
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates on each axis: a shift of p pixels is 2p / size, and the rotation is
    # done in pixel units (the h/w factors) so that non-square images rotate without shearing
    theta = torch.stack([torch.stack([cos, -sin * h / w, move[:, 1] * 2 / w], 1),
                         torch.stack([sin * w / h, cos, move[:, 0] * 2 / h], 1)], 1)
    grid = F.affine_grid(theta.to(t.device, t.dtype), [n, c, h, w], align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def augment(x: list[torch.Tensor], cfg: DistillConfig, epoch: int, step: int) -> list[torch.Tensor]:
    """The configured augmentation of one batch (the inputs themselves when none is configured)."""
    if cfg.augment_rotate or cfg.augment_scale:
        return augment_affine(x, rotate=cfg.augment_rotate, scale=cfg.augment_scale, shift=cfg.augment_shift,
                              seed=cfg.seed, epoch=epoch, step=step)
    if cfg.augment_shift:
        return augment_shift(x, cfg.augment_shift, cfg.seed, epoch, step)
    return x
