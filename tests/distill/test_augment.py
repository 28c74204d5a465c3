"""Training-time augmentation: teacher and student see the same transformed batch, reproducibly."""

from __future__ import annotations

import math

import numpy as np
import torch

from edgecompress.distill import DistillConfig, distill
from edgecompress.distill.augment import augment, augment_affine, augment_shift, warp

from .conftest import MNIST, spec


def _digit_batch(n: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 9:19, 12:16] = 1.0
    return x


def _centre(t: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(t.shape[-2], dtype=t.dtype).view(1, 1, -1, 1)
    cols = torch.arange(t.shape[-1], dtype=t.dtype).view(1, 1, 1, -1)
    m = t.sum((1, 2, 3))
    return torch.stack([(t * rows).sum((1, 2, 3)) / m, (t * cols).sum((1, 2, 3)) / m], 1)


def test_affine_is_reproducible_and_bounded():
    x = _digit_batch()
    a = augment_affine([x], rotate=15, scale=0.1, shift=3, seed=1, epoch=2, step=3)[0]
    b = augment_affine([x], rotate=15, scale=0.1, shift=3, seed=1, epoch=2, step=3)[0]
    c = augment_affine([x], rotate=15, scale=0.1, shift=3, seed=1, epoch=2, step=4)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and not torch.equal(a, x)
    # a pure translation moves the centre of mass by at most `shift` pixels per axis, and keeps the mass
    t = augment_affine([x], rotate=0, scale=0, shift=3, seed=0, epoch=0, step=0)[0]
    moved = (_centre(t) - _centre(x)).abs()
    assert float(moved.max()) <= 3.0 + 1e-4 and float(moved.max()) > 0.1
    assert torch.allclose(t.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-4)
    # without rotation, zoom or shift the warp is the identity
    same = augment_affine([x], rotate=0, scale=0, shift=0, seed=0, epoch=0, step=0)[0]
    assert torch.allclose(same, x, atol=1e-6)


def test_warp_is_exact_on_non_square_images():
    """Pixel units on both axes: a translation moves content by exactly that many rows and columns, and a
    90-degree rotation keeps distances (no shear from the h != w normalisation)."""
    x = torch.zeros(1, 1, 21, 41)
    x[0, 0, 9:12, 27:30] = 1.0  # a 3x3 blob centred 8 columns right of the image centre (10, 20)
    one = torch.ones(1, dtype=torch.float64)
    moved = warp(x, 0 * one, one, torch.tensor([[3.0, -5.0]], dtype=torch.float64))
    d = (_centre(moved) - _centre(x))[0]
    assert torch.allclose(d.abs(), torch.tensor([3.0, 5.0]), atol=1e-4), d
    turned = warp(x, one * math.pi / 2, one, torch.zeros(1, 2, dtype=torch.float64))
    r, c = _centre(turned)[0].tolist()
    assert abs(c - 20) < 1e-3 and abs(abs(r - 10) - 8) < 1e-3, (r, c)
    assert abs(float(turned.sum()) - 9.0) < 1e-3
    zoomed = warp(x, 0 * one, 2 * one, torch.zeros(1, 2, dtype=torch.float64))
    r, c = _centre(zoomed)[0].tolist()
    assert abs(r - 10) < 1e-3 and abs(c - 36) < 1e-3, (r, c)  # twice as far from the centre


def test_several_image_inputs_get_the_same_warp():
    x = _digit_batch()
    a, b = augment_affine([x, x.clone()], rotate=20, scale=0.1, shift=2, seed=0, epoch=0, step=0)
    assert torch.equal(a, b)
    a, b = augment_shift([x, x.clone()], 2, 0, 0, 0)
    assert torch.equal(a, b)


def test_rotation_turns_the_digit():
    x = _digit_batch(64)  # a vertical bar: 10 rows tall, 4 columns wide
    y = augment_affine([x], rotate=90, scale=0, shift=0, seed=0, epoch=0, step=0)[0]
    tall = ((y > 0.5).any(3).sum((1, 2))).float()
    wide = ((y > 0.5).any(2).sum((1, 2))).float()
    assert bool((wide > tall).any()), "some bars must end up wider than tall after rotations up to 90 degrees"


def test_non_image_inputs_pass_through():
    ids = torch.arange(12).view(3, 4)
    emb = torch.rand(3, 5)
    out = augment_affine([ids, emb], rotate=10, scale=0.1, shift=2, seed=0, epoch=0, step=0)
    assert out[0] is ids and out[1] is emb
    assert augment_shift([ids], 2, 0, 0, 0)[0] is ids


def test_augment_dispatch():
    x = _digit_batch()
    base = dict(teacher=f"{MNIST}:teacher", student=f"{MNIST}:student")
    assert augment([x], DistillConfig(**base), 0, 0)[0] is x
    shifted = augment([x], DistillConfig(**base, augment_shift=2), 0, 0)[0]
    assert torch.equal(shifted, augment_shift([x], 2, 0, 0, 0)[0])
    warped = augment([x], DistillConfig(**base, augment_rotate=10, augment_shift=2), 0, 0)[0]
    assert torch.equal(warped, augment_affine([x], rotate=10, scale=0, shift=2, seed=0, epoch=0, step=0)[0])
    assert DistillConfig(**base, augment_scale=0.1).augments and not DistillConfig(**base).augments


def test_training_with_affine_augmentation_is_deterministic(mnist_small, tmp_path):
    train, val = mnist_small
    base = dict(teacher=spec("mlp_teacher"), student=spec("mlp_student"), epochs=2, batch_size=32, seed=4, alpha=0.9)
    cfg = DistillConfig(**base, augment_rotate=10, augment_scale=0.1, augment_shift=2)

    def weights(config: DistillConfig, name: str) -> dict:
        distill(config, data=train, val=val, out=tmp_path / name)
        return torch.load(tmp_path / name, weights_only=True)

    a, b, c = weights(cfg, "a.pt"), weights(cfg, "b.pt"), weights(DistillConfig(**base), "c.pt")
    assert a["config"]["augment_rotate"] == 10
    a, b, c = a["state_dict"], b["state_dict"], c["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a), "augmentation changed nothing"


def test_teacher_scores_every_augmented_batch(mnist_small, tmp_path):
    """With augmentation the teacher's outputs cannot be cached: it must score each warped batch (consistent
    teaching); without augmentation it scores the training set once."""
    from edgecompress.distill.models import load_factory

    counter = type(load_factory(spec("counting_teacher")))  # the class the SPEC importer caches and distill uses
    train, val = mnist_small
    n = len(np.load(train)["labels"])
    base = dict(teacher=spec("counting_teacher"), student=spec("mlp_student"), epochs=3, batch_size=32, alpha=0.9)
    seen = []
    for k, aug in enumerate(({}, {"augment_rotate": 10.0})):
        before = counter.images
        distill(DistillConfig(**base, **aug), data=train, val=val, out=tmp_path / f"s{k}.pt")
        seen.append(counter.images - before)
    # cached: the training set scored once; on the fly: every epoch's batches (3 epochs), the rest alike
    assert seen[1] - seen[0] == 2 * n, seen


def test_tie_keeps_the_later_epoch(mnist_small, tmp_path):
    """With a learning rate too small to change any prediction, every epoch ties on val accuracy: the best
    checkpoint is the last one (it trained longest)."""
    train, val = mnist_small
    cfg = DistillConfig(teacher=spec("mlp_teacher"), student=spec("mlp_student"), epochs=3, batch_size=64,
                        seed=0, lr=1e-12)
    r = distill(cfg, data=train, val=val, out=tmp_path / "s.pt")
    metrics = [h["accuracy"] for h in r.report.history]
    assert len(set(metrics)) == 1
    assert r.report.best_epoch == 3


def test_ensemble_teacher_distils(mnist_small, tmp_path):
    """The bench's teacher: several networks averaged; its state_dict holds every member."""
    from edgecompress.distill.models import load_factory

    ens = load_factory(f"{MNIST}:teacher_ensemble")
    assert len(ens.members) == 4
    assert sum(p.numel() for p in ens.parameters()) == 4 * sum(p.numel() for p in ens.members[0].parameters())
    x = torch.from_numpy(np.load(mnist_small[1])["input"][:3])
    ens.eval()
    with torch.no_grad():
        mean = torch.stack([m(x) for m in ens.members]).mean(0)
        assert torch.allclose(ens(x), mean, atol=1e-6)
    torch.save(ens.state_dict(), tmp_path / "ens.pt")
    train, val = mnist_small
    cfg = DistillConfig(teacher=f"{MNIST}:teacher_ensemble", teacher_weights=str(tmp_path / "ens.pt"),
                        student=f"{MNIST}:student_small", epochs=1, batch_size=64, alpha=1.0, max_samples=128)
    r = distill(cfg, data=train, val=val, out=tmp_path / "s.pt")
    assert r.report.teacher["params"] == 4 * 112_106 and r.report.student["params"] == 7_738
