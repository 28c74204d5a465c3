"""`prune --recover`: win back what pruning cost by label-free distillation of the pruned ONNX model from the
original, on unlabeled data, for models that exist only as ONNX.

Both graphs run in PyTorch through `OnnxModule` (checked against ONNX Runtime first); the student's weights are
trained to match the teacher on every float output (mean squared error, each output normalized by the teacher's
variance on the data) and written back into the pruned graph, which keeps its structure and names.

Few images go a long way when teacher and student see the same strongly augmented views ("function matching",
Beyer et al. 2022): each 4-D float input (NCHW images) gets a random resized crop, a flip and a mixup with another
sample of the batch; other inputs (token ids, masks, vectors) are used as they are. The random draws of step k
come from a generator seeded by (seed, k) alone and the state is saved every `SAVE_EVERY` steps, so `resume`
continues a killed run where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ..data import FeedData
from ..errors import ConfigError, InputError
from ..fsutil import atomic_write_bytes
from .augment import warp
from .onnx_module import OnnxModule, check_parity, write_weights
from .trainer import _Bar, pick_device

SAVE_EVERY = 50
STATE_FORMAT = "edgecompress-recover-1"


@dataclass(frozen=True)
class RecoverSettings:
    steps: int
    batch_size: int
    lr: float
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    synthetic: float = 0.0  # fraction of each image batch replaced by procedural "dead leaves" images


@dataclass(frozen=True)
class RecoverReport:
    steps: int
    batch_size: int
    lr: float
    device: str
    samples: int
    seconds: float
    samples_per_s: float
    loss_first: float
    loss_last: float
    resumed_from: int | None
    history: tuple[tuple[int, float], ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [list(h) for h in self.history]
        return d


def _groups(data: FeedData, names: list[str]) -> list[list[torch.Tensor]]:
    """Samples grouped by input shapes (sequences of several lengths cannot share a batch), each group stacked."""
    by_shape: dict[tuple, list[dict[str, np.ndarray]]] = {}
    for f in data.feeds():
        by_shape.setdefault(tuple(f[n].shape for n in names), []).append(f)
    return [[torch.from_numpy(np.concatenate([f[n] for f in fs])) for n in names] for fs in by_shape.values()]


def _is_image(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_floating_point() and t.shape[1] in (1, 3, 4) and min(t.shape[2:]) >= 16


def dead_leaves(n: int, c: int, h: int, w: int, g: torch.Generator, *, discs: int = 64,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Procedural images (Lee et al. 2001; Baradad et al. 2021): a random background covered by `discs` occluding
    discs of random colour with power-law radii; pixel values in [0, 1], shape [n, c, h, w]. The random draws come
    from `g` (on the CPU); the pixels are made on `device`."""
    back = torch.rand(n, c, 1, 1, generator=g)
    cy, cx = torch.rand(discs, n, 1, 1, generator=g) * h, torch.rand(discs, n, 1, 1, generator=g) * w
    r = min(h, w) * 0.02 * (25.0 ** torch.rand(discs, n, 1, 1, generator=g))  # 2 % to 50 % of the image side
    col = torch.rand(discs, n, c, 1, 1, generator=g)
    back, cy, cx, r, col = (v.to(device) for v in (back, cy, cx, r, col))
    img = back.expand(n, c, h, w).clone()
    yy = torch.arange(h, dtype=torch.float32, device=device)[:, None]
    xx = torch.arange(w, dtype=torch.float32, device=device)[None, :]
    for k in range(discs):
        mask = ((yy - cy[k]) ** 2 + (xx - cx[k]) ** 2 <= r[k] ** 2)[:, None]
        img = torch.where(mask, col[k], img)
    return img


def _image_stats(groups: list[list[torch.Tensor]]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and std of each image input (by position), so procedural images share the data's scale."""
    out = {}
    for i, t in enumerate(groups[0]):
        if _is_image(t):
            allv = torch.cat([g[i] for g in groups]).float()
            out[i] = allv.mean(dim=(0, 2, 3)), allv.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return out


def _views(x: list[torch.Tensor], g: torch.Generator, stats: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
           synthetic: float = 0.0) -> list[torch.Tensor]:
    """Random resized crop (zoom 1-2x, anywhere in the image), horizontal flip and mixup, the same for all image
    inputs of a sample, after replacing the fraction `synthetic` of the samples by procedural images (scaled to
    the data's per-channel mean and std); non-image inputs pass through."""
    n = x[0].shape[0]
    fake = torch.rand(n, generator=g) < synthetic if synthetic > 0 else None
    zoom = 1 + torch.rand(n, generator=g, dtype=torch.float64)
    room = (1 - 1 / zoom)  # fraction of the image the crop can move by, each way
    move = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * room[:, None]
    flip = torch.rand(n, generator=g) < 0.5
    lam = torch.rand(n, generator=g)
    perm = torch.randperm(n, generator=g)
    out = []
    for i, t in enumerate(x):
        if not _is_image(t):
            out.append(t)
            continue
        h, w = t.shape[2:]
        if fake is not None and bool(fake.any()) and stats and i in stats:
            mean, std = stats[i]
            dl = dead_leaves(int(fake.sum()), t.shape[1], h, w, g, device=t.device)
            dl = (dl - dl.mean(dim=(0, 2, 3), keepdim=True)) / dl.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
            t = t.clone()
            mean, std = mean.to(t.device), std.to(t.device)
            t[fake.to(t.device)] = (dl * std[:, None, None] + mean[:, None, None]).to(t.dtype)
        v = warp(t, torch.zeros(n, dtype=torch.float64), zoom, move * torch.tensor([h / 2, w / 2],
                                                                                     dtype=torch.float64))
        v = torch.where(flip.to(v.device)[:, None, None, None], v.flip(3), v)
        lm = lam.to(v.device, v.dtype)[:, None, None, None]
        out.append(lm * v + (1 - lm) * v[perm.to(v.device)])
    return out


def _fingerprint(settings: RecoverSettings, student: onnx.ModelProto, data: FeedData) -> str:
    h = hashlib.sha256()
    h.update(repr({k: v for k, v in asdict(settings).items() if k not in ("resume", "device")}).encode())
    h.update(student.SerializeToString())
    h.update(data.content_hash().encode())
    return h.hexdigest()


def recover(teacher: onnx.ModelProto, student: onnx.ModelProto, data: FeedData, settings: RecoverSettings, *,
            state_path: Path, progress: bool = True) -> tuple[onnx.ModelProto, RecoverReport]:
    """The student graph with weights distilled from the teacher on `data` (see the module docstring)."""
    dev = pick_device(settings.device)
    t_mod, s_mod = OnnxModule(teacher), OnnxModule(student)
    check_parity(t_mod, teacher, data, "input model")
    check_parity(s_mod, student, data, "pruned model")
    names = s_mod.input_names
    groups = _groups(data, names)
    sizes = np.array([g[0].shape[0] for g in groups], dtype=np.float64)
    stats = _image_stats(groups)
    t_mod.to(dev).eval()
    s_mod.to(dev).train()
    for p in t_mod.parameters():
        p.requires_grad_(False)
    floats = [i for i, _ in enumerate(t_mod.output_names)]
    with torch.no_grad():  # per-output scale: the teacher's variance on the data
        outs = [t_mod(*[v[:64].to(dev) for v in g]) for g in groups]
        floats = [i for i in floats if outs[0][i].is_floating_point()]
        var = [max(float(torch.cat([o[i].float().reshape(o[i].shape[0], -1) if o[i].dim() else o[i].reshape(1, 1)
                                    for o in outs]).var()), 1e-12) for i in floats]
    if not floats:
        raise ConfigError("--recover: the model has no float outputs to distil")
    opt = torch.optim.AdamW(s_mod.parameters(), lr=settings.lr, weight_decay=0.0)
    warm = max(1, settings.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, k / settings.steps))))
    fp = _fingerprint(settings, student, data)
    start, history, resumed = 0, [], None
    if settings.resume and state_path.is_file():
        st = _load(state_path, fp)
        s_mod.load_state_dict(st["student"], strict=False)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start, history, resumed = st["step"], [tuple(h) for h in st["history"]], st["step"]
    amp = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    t0 = time.perf_counter()
    seen = 0
    bar = _Bar(settings.steps, enabled=progress)
    bar.advance(start)
    with bar:
        for step in range(start, settings.steps):
            g = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
            gi = int(torch.multinomial(torch.from_numpy(sizes), 1, generator=g))
            n = groups[gi][0].shape[0]
            idx = torch.randint(0, n, (min(settings.batch_size, max(n, 2)),), generator=g)
            x = _views([v[idx].to(dev, non_blocking=True) for v in groups[gi]], g, stats, settings.synthetic)
            with torch.autocast("cuda", dtype=amp) if amp else contextlib.nullcontext():
                with torch.no_grad():
                    t_out = t_mod(*x)
                s_out = s_mod(*x)
                loss = sum(((s_out[i].float() - t_out[i].float()) ** 2).mean() / v
                           for i, v in zip(floats, var, strict=True)) / len(floats)
            if not torch.isfinite(loss):
                from ..errors import RuntimeFailure

                raise RuntimeFailure(f"--recover: the loss became {float(loss)} at step {step + 1}",
                                     hint="lower --recover-lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            lv = float(loss.detach())
            if step == start or (step + 1) % 10 == 0 or step + 1 == settings.steps:
                history.append((step + 1, round(lv, 6)))
            bar.update(f"recover step {step + 1}/{settings.steps} loss {lv:.4f}")
            if (step + 1) % SAVE_EVERY == 0 and step + 1 < settings.steps:
                _save(state_path, fp, step + 1, s_mod, opt, sched, history)
    secs = time.perf_counter() - t0
    out = write_weights(student, s_mod.weights())
    state_path.unlink(missing_ok=True)
    first = history[0][1] if history else float("nan")
    last = history[-1][1] if history else float("nan")
    return out, RecoverReport(settings.steps, settings.batch_size, settings.lr, str(dev), data.n, round(secs, 2),
                              round(seen / secs, 1) if secs > 0 else 0.0, first, last, resumed, tuple(history))


def _save(path: Path, fp: str, step: int, mod: OnnxModule, opt, sched, history) -> None:
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "fingerprint": fp, "step": step,
                "student": {k: v.detach().cpu() for k, v in mod.state_dict().items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, fp: str) -> dict[str, Any]:
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"recover state {path} is unreadable ({type(exc).__name__})",
                         hint="delete it and start without --resume") from None
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise InputError(f"recover state {path} is not an edgecompress recover state file",
                         hint="delete it and start without --resume")
    if st.get("fingerprint") != fp:
        raise ConfigError(f"--resume: {path} was written with other options, data or pruned model",
                          hint="use the same flags and data as the interrupted run, or drop --resume")
    return st
