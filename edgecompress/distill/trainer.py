"""The training loop: student learns from a frozen teacher.

Seeded and deterministic on CPU (the data order of epoch e depends only on (seed, e)); AdamW or SGD with a
per-step warmup + cosine schedule; a resumable state file written atomically after every epoch (model,
optimizer, schedule, adapters, RNG, best weights), so `--resume` continues exactly where a killed run stopped;
best weights by the val metric; autocast on CUDA; DistributedDataParallel when launched by torchrun.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..artifact import config_to_dict
from ..errors import ConfigError, InputError
from ..fsutil import atomic_write_bytes
from .augment import augment
from .config import DistillConfig
from .data import TensorSet
from .losses import FeatureHints, task_loss

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

STATE_FORMAT = "edgecompress.distill.state/1"
# options that may differ between a killed run and its --resume without changing the result
_RESUME_FREE = ("resume", "device", "amp")


def primary(out: Any) -> torch.Tensor:
    """The tensor a model returns (first tensor of a tuple/list, 'logits' or first value of a dict)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
        return primary(out)
    if isinstance(out, (tuple, list)) and out:
        return primary(out[0])
    raise ConfigError(f"model returned {type(out).__name__}; expected a tensor, a tuple or a dict of tensors")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun (or a test's spawn) describes in the environment; no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, dist: Dist | None = None) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked but no CUDA device is available", hint="use --device cpu or auto")
    if name in ("cuda", "auto") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainOutcome:
    best_state: dict[str, torch.Tensor]
    best_metric: float
    best_epoch: int
    final_state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    resumed_from: int | None
    seconds: float


def fingerprint(config: DistillConfig, extra: dict[str, Any]) -> str:
    d = {k: v for k, v in config_to_dict(config).items() if k not in _RESUME_FREE}
    return hashlib.sha256(json.dumps([d, extra], sort_keys=True, default=str).encode()).hexdigest()


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))
    return f


def make_optimizer(params: list[nn.Parameter], config: DistillConfig, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.momentum > 0)
    return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)


@torch.no_grad()
def predict(model: nn.Module, ts: TensorSet, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    outs = []
    for i in range(0, ts.n, batch_size):
        outs.append(primary(model(*[v[i:i + batch_size].to(device) for v in ts.inputs.values()])).float().cpu())
    return torch.cat(outs)


def metric_of(out: torch.Tensor, teacher_out: torch.Tensor, labels: torch.Tensor | None, kind: str) -> tuple[str, float]:
    """Val metric (higher is better): accuracy with labels, else top-1 agreement with the teacher; for embedding
    losses the mean cosine similarity to the teacher."""
    if kind != "kd":
        cos = torch.nn.functional.cosine_similarity(out.flatten(1), teacher_out.flatten(1), dim=1)
        return "cosine_to_teacher", float(cos.mean())
    pred = out.flatten(0, -2).argmax(-1) if out.dim() > 2 else out.argmax(-1)
    if labels is not None:
        return "accuracy", float((pred == labels.reshape(-1)).float().mean())
    tpred = teacher_out.flatten(0, -2).argmax(-1) if teacher_out.dim() > 2 else teacher_out.argmax(-1)
    return "teacher_agreement", float((pred == tpred).float().mean())


class Trainer:
    def __init__(self, teacher: nn.Module, student: nn.Module, train: TensorSet, val: TensorSet,
                 config: DistillConfig, *, device: torch.device, dist: Dist, state_path: Path,
                 fingerprint_extra: dict[str, Any], progress: bool = True,
                 on_best: Callable[[dict[str, torch.Tensor], float, int], None] | None = None) -> None:
        self.teacher, self.student, self.train_set, self.val_set = teacher, student, train, val
        self.cfg, self.device, self.dist, self.state_path = config, device, dist, state_path
        self.fp = fingerprint(config, fingerprint_extra)
        self.progress, self.on_best = progress, on_best
        self.hints: FeatureHints | None = None

    # -- setup -------------------------------------------------------------------------------------------------
    def _teacher_outputs(self, ts: TensorSet) -> torch.Tensor:
        return predict(self.teacher, ts, self.device)

    def _build_hints(self) -> None:
        pairs = self.cfg.feature_pairs
        if not pairs:
            return
        self.hints = FeatureHints(self.teacher, self.student, pairs)
        x = [v[:2].to(self.device) for v in self.train_set.inputs.values()]
        with torch.no_grad():
            self.teacher.eval()
            self.teacher(*x)
            was = self.student.training
            self.student.eval()
            self.student(*x)
            self.student.train(was)
        self.hints.build()
        self.hints.to(self.device)

    def run(self) -> TrainOutcome:
        import time

        t0 = time.perf_counter()
        cfg, dev, d = self.cfg, self.device, self.dist
        torch.manual_seed(cfg.seed)
        self.teacher.to(dev).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student.to(dev)
        self._build_hints()
        params = list(self.student.parameters()) + (list(self.hints.parameters()) if self.hints else [])
        opt = make_optimizer(params, cfg, cfg.lr)
        n = self.train_set.n
        steps_per_epoch = self._steps_per_epoch(n)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, _lr_lambda(steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs))
        ce_only = cfg.loss == "kd" and cfg.alpha == 0 and self.train_set.labels is not None and not self.hints
        # teacher outputs are computed once when inputs never change (no augmentation, no feature hints)
        on_the_fly = not ce_only and (self.hints is not None or cfg.augments)
        cached = None if (ce_only or on_the_fly) else self._teacher_outputs(self.train_set)
        val_teacher = self._teacher_outputs(self.val_set)

        start_epoch, best_metric, best_epoch, history, resumed = 0, -math.inf, -1, [], None
        best_state = copy.deepcopy(self.student.state_dict())
        if cfg.resume and self.state_path.is_file():
            st = self._load_state()
            self.student.load_state_dict(st["student"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            if self.hints is not None and st.get("adapters") is not None:
                self.hints.adapters.load_state_dict(st["adapters"])
            torch.set_rng_state(st["rng"])
            start_epoch, best_metric, best_epoch = st["epoch"] + 1, st["best_metric"], st["best_epoch"]
            best_state, history, resumed = st["best_state"], st["history"], st["epoch"] + 1

        model: nn.Module = self.student
        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(self.student, device_ids=[dev.index] if dev.type == "cuda" else None)
        amp_dtype = None
        scaler = None
        if cfg.amp and dev.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if amp_dtype == torch.float16:
                scaler = torch.amp.GradScaler("cuda")

        bar = _Bar(cfg.epochs * steps_per_epoch, enabled=self.progress and d.main)
        bar.advance(start_epoch * steps_per_epoch)
        metric_name = "accuracy"
        with bar:
            for epoch in range(start_epoch, cfg.epochs):
                self.student.train()
                total, count = torch.zeros((), dtype=torch.float64), 0
                for step, idx in enumerate(self._epoch_batches(n, epoch)):
                    feeds, y = self.train_set.index(idx)
                    x = [v.to(dev, non_blocking=True) for v in feeds.values()]
                    y = y.to(dev) if y is not None else None
                    x = augment(x, cfg, epoch, step)
                    if ce_only:
                        t_out = None
                    elif on_the_fly:
                        with torch.no_grad():
                            t_out = primary(self.teacher(*x)).float()
                    else:
                        if cached is None:
                            raise RuntimeError("distill: teacher outputs were not cached before training")
                        t_out = cached[idx].to(dev)
                    ctx = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
                    with ctx:
                        s_out = primary(model(*x))
                        if t_out is None:
                            t_out = s_out.detach()
                        if s_out.shape != t_out.shape:
                            raise ConfigError(f"teacher and student output shapes differ: teacher "
                                              f"{list(t_out.shape)}, student {list(s_out.shape)}")
                        loss = task_loss(s_out, t_out, y, kind=cfg.loss, temperature=cfg.temperature,
                                         alpha=cfg.alpha)
                        if self.hints is not None:
                            loss = loss + cfg.feature_weight * self.hints.loss()
                    if not torch.isfinite(loss):
                        from ..errors import RuntimeFailure

                        raise RuntimeFailure(f"training loss became {float(loss)} at epoch {epoch + 1} step "
                                             f"{step + 1}", hint="lower --lr")
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        self._sync_adapters()
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        self._sync_adapters()
                        opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                    bar.update(f"epoch {epoch + 1}/{cfg.epochs} loss {float(total / count):.4f}")
                train_loss = self._reduce_mean(float(total / max(1, count)))
                out = predict(self.student, self.val_set, dev)
                metric_name, metric = metric_of(out, val_teacher, self.val_set.labels, cfg.loss)
                history.append({"epoch": epoch + 1, "train_loss": train_loss, metric_name: metric,
                                "lr": float(sched.get_last_lr()[0])})
                bar.update(f"epoch {epoch + 1}/{cfg.epochs} loss {train_loss:.4f} val {metric_name} {metric:.4f}",
                           log=True)
                # on a tie the later epoch wins: it has trained longer at a lower learning rate
                if metric >= best_metric:
                    best_metric, best_epoch = metric, epoch + 1
                    best_state = {k: v.detach().cpu().clone() for k, v in self.student.state_dict().items()}
                    if self.on_best is not None and d.main:
                        self.on_best(best_state, best_metric, best_epoch)
                if d.main:
                    self._save_state(epoch, opt, sched, best_metric, best_epoch, best_state, history)
        if self.hints is not None:
            self.hints.remove()
        final = {k: v.detach().cpu().clone() for k, v in self.student.state_dict().items()}
        return TrainOutcome(best_state, best_metric, best_epoch, final, history, resumed,
                            time.perf_counter() - t0)

    # -- batches -----------------------------------------------------------------------------------------------
    def _steps_per_epoch(self, n: int) -> int:
        b, w = self.cfg.batch_size, self.dist.world
        full, rest = divmod(n, b)
        return full + (1 if rest >= w else 0)

    def _epoch_batches(self, n: int, epoch: int):
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        b, w, r = self.cfg.batch_size, self.dist.world, self.dist.rank
        for i in range(self._steps_per_epoch(n)):
            glob = perm[i * b:(i + 1) * b]
            yield glob[r::w] if w > 1 else glob

    def _sync_adapters(self) -> None:
        if self.dist.world <= 1 or self.hints is None:
            return
        import torch.distributed as dist

        for p in self.hints.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.dist.world

    def _reduce_mean(self, value: float) -> float:
        if self.dist.world <= 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0] / self.dist.world)

    # -- state file --------------------------------------------------------------------------------------------
    def _save_state(self, epoch: int, opt, sched, best_metric, best_epoch, best_state, history) -> None:
        state = {
            "format": STATE_FORMAT, "fingerprint": self.fp, "epoch": epoch,
            "student": {k: v.detach().cpu() for k, v in self.student.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "adapters": self.hints.adapters.state_dict() if self.hints is not None else None,
            "rng": torch.get_rng_state(), "best_metric": best_metric, "best_epoch": best_epoch,
            "best_state": best_state, "history": history,
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.state_path, buf.getvalue())

    def _load_state(self) -> dict[str, Any]:
        try:
            st = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"resume state {self.state_path} is unreadable ({type(exc).__name__})",
                             hint="delete it and start without --resume") from None
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
            raise InputError(f"resume state {self.state_path} is not an edgecompress distill state file")
        if st.get("fingerprint") != self.fp:
            raise ConfigError(f"--resume: {self.state_path} was written with different options or data",
                              hint="use the same flags and data as the interrupted run, or drop --resume")
        return st


class _Bar:
    """A rich progress bar on stderr (loss and metric in the description); silent when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._done = 0

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("distill", total=self.total, completed=self._done)
        return self

    def advance(self, n: int) -> None:
        self._done += n

    def update(self, text: str, log: bool = False) -> None:
        if self._progress is None or self._task is None:  # disabled (both are set together in __enter__)
            return
        if log:
            self._progress.update(self._task, description=text)
            if not sys.stderr.isatty():
                self._progress.console.print(text)
        else:
            self._progress.update(self._task, description=text, advance=1)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
