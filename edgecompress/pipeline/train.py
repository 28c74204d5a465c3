"""`[train]`: train the recipe's PyTorch model from scratch (or fine-tune it from model.weights) on labelled data.

The built-in demo uses it for its teacher, so that no pretrained weights have to be shipped or downloaded.
Classification only (cross-entropy on `labels`); seeded and deterministic on a given machine.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 2  # passes over data.train
    batch_size: int = 64
    lr: float = 0.003  # peak learning rate of AdamW under a one-cycle schedule
    weight_decay: float = 0.0
    seed: int = 0  # initialisation and data order
    max_samples: int = 0  # 0 = every sample of data.train
    threads: int = 1  # torch CPU threads while training; fixed so results do not depend on the machine's cores

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {v!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 1 <= self.threads <= 256:
            raise ConfigError(f"train.threads must be an integer in 1..256, got {self.threads!r}")
        for name in ("seed", "max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"train.{name} must be an integer >= 0, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < 10:
            raise ConfigError(f"train.lr must be a number in (0, 10), got {self.lr!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be a number >= 0, got {self.weight_decay!r}")


def build_model(source: str, weights: str | Path | None = None, *, seed: int = 0):
    """The factory's module (seeded init), with `weights` loaded when given."""
    import torch

    from ..distill.models import load_factory, load_weights

    torch.manual_seed(seed)
    model = load_factory(source, "model.source")
    if weights:
        load_weights(model, weights, "model.weights")
    return model


def train(source: str, config: TrainConfig, *, data, out: Path, weights: str | None = None,
          val=None, progress=None) -> dict[str, Any]:
    """Train and write the state dict to `out`; returns metrics (final loss, val accuracy if val has labels)."""
    import numpy as np
    import torch

    from ..data import load_data

    feeds = load_data(data, what="data.train")
    if feeds.labels is None:
        raise DataError(f"data.train {feeds.source}: [train] needs 'labels'")
    x = _stack(feeds, "data.train")
    y = np.asarray(feeds.labels, dtype=np.int64)
    if config.max_samples:
        x, y = x[: config.max_samples], y[: config.max_samples]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(source, config, x, y, out=out, weights=weights, val=val, progress=progress)
    finally:
        torch.set_num_threads(threads_before)


def _train(source, config, x, y, *, out, weights, val, progress) -> dict[str, Any]:
    import numpy as np
    import torch

    from ..data import load_data
    from ..fsutil import atomic_write_bytes

    torch.manual_seed(config.seed)
    model = build_model(source, weights, seed=config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(x) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(config.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_v = float("nan")
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_v = float(loss.detach())
        if progress:
            progress(f"epoch {epoch + 1}/{config.epochs} loss {loss_v:.4f}")
    model.eval()
    metrics: dict[str, Any] = {"train_loss": round(loss_v, 6), "samples": int(len(x)), "epochs": config.epochs}
    if val:
        vf = load_data(val, what="data.val")
        if vf.labels is not None:
            with torch.no_grad():
                pred = model(torch.from_numpy(_stack(vf, "data.val"))).argmax(1).numpy()
            metrics["val_accuracy"] = float((pred == np.asarray(vf.labels)).mean())
    buf = io.BytesIO()  # torch.save names the zip's root folder after the file: save to memory so the
    torch.save(model.state_dict(), buf)  # bytes do not depend on the temp file's random name
    atomic_write_bytes(out, buf.getvalue())
    return metrics


def _stack(feeds, what: str):
    import numpy as np

    stacked = feeds.stacked()
    if len(stacked) != 1:
        raise DataError(f"{what} {feeds.source}: [train] handles single-input models; found inputs {sorted(stacked)}")
    return np.ascontiguousarray(next(iter(stacked.values())), dtype=np.float32)
