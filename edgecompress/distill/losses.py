"""Distillation losses. The student always learns from the teacher (teacher outputs are detached).

* `kd_loss`: Hinton et al. 2015 — KL(softmax(t/T) || softmax(s/T)) * T^2, mixed with cross-entropy on hard
  labels: alpha * KD + (1 - alpha) * CE. With alpha = 1 (or no labels) it is pure soft targets.
* `embedding_loss`: cosine (1 - cos) or MSE to the teacher's embeddings, for embedding models.
* `FeatureHints`: hint loss (MSE) between chosen intermediate layers through a learned 1x1 conv / linear adapter
  that maps the student's features to the teacher's width (FitNets, Romero et al. 2015).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None, *,
            temperature: float, alpha: float) -> torch.Tensor:
    t = float(temperature)
    s = student_logits.float().flatten(0, -2) if student_logits.dim() > 2 else student_logits.float()
    te = teacher_logits.detach().float().flatten(0, -2) if teacher_logits.dim() > 2 else teacher_logits.detach().float()
    soft = F.kl_div(F.log_softmax(s / t, dim=-1), F.log_softmax(te / t, dim=-1), reduction="batchmean",
                    log_target=True) * (t * t)
    if labels is None or alpha >= 1.0:
        return soft
    hard = F.cross_entropy(s, labels.reshape(-1))
    if alpha <= 0.0:
        return hard
    return alpha * soft + (1.0 - alpha) * hard


def embedding_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, kind: str) -> torch.Tensor:
    s = student_out.float().flatten(1)
    t = teacher_out.detach().float().flatten(1)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(s, t, dim=1)).mean()
    if kind == "mse":
        return F.mse_loss(s, t)
    raise ConfigError(f"loss must be kd, cosine or mse, got {kind!r}")


def task_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, labels: torch.Tensor | None, *, kind: str,
              temperature: float, alpha: float) -> torch.Tensor:
    if kind == "kd":
        return kd_loss(student_out, teacher_out, labels, temperature=temperature, alpha=alpha)
    return embedding_loss(student_out, teacher_out, kind)


def _module(model: nn.Module, name: str, who: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        near = [n for n in modules if n and (name.split(".")[-1] in n)][:4]
        hint = f"; similar: {', '.join(near)}" if near else ""
        raise ModelError(f"feature-KD layer {name!r} does not exist in the {who}{hint}",
                         hint=f"pick a name from the {who}'s named_modules()")
    return modules[name]


class FeatureHints(nn.Module):
    """Capture chosen layer outputs with forward hooks and compute MSE hint losses through learned adapters."""

    def __init__(self, teacher: nn.Module, student: nn.Module, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = list(pairs)
        self._t_feats: dict[str, torch.Tensor] = {}
        self._s_feats: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        for t_name, s_name in self.pairs:
            t_mod = _module(teacher, t_name, "teacher")
            s_mod = _module(student, s_name, "student")
            self._handles.append(t_mod.register_forward_hook(self._store(self._t_feats, t_name)))
            self._handles.append(s_mod.register_forward_hook(self._store(self._s_feats, s_name)))
        self.adapters = nn.ModuleDict()

    @staticmethod
    def _store(bucket: dict[str, torch.Tensor], name: str):
        def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor):
                bucket[name] = out
        return hook

    def build(self) -> None:
        """Create adapters from the shapes captured in one forward pass of both models (call once)."""
        for t_name, s_name in self.pairs:
            t, s = self._t_feats.get(t_name), self._s_feats.get(s_name)
            if t is None or s is None:
                missing = t_name if t is None else s_name
                raise ModelError(f"feature-KD layer {missing!r} produced no tensor output in a forward pass")
            key = self._key(t_name, s_name)
            if t.dim() == 4 and s.dim() == 4:
                self.adapters[key] = nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
            elif t.dim() == s.dim() and t.dim() >= 2:
                self.adapters[key] = nn.Linear(s.shape[-1], t.shape[-1], bias=False)
            else:
                raise ModelError(f"feature-KD pair {t_name}:{s_name}: teacher output shape {list(t.shape)} and "
                                 f"student output shape {list(s.shape)} cannot be matched by a 1x1/linear adapter")

    @staticmethod
    def _key(t_name: str, s_name: str) -> str:
        return f"{t_name}->{s_name}".replace(".", "_")

    def loss(self) -> torch.Tensor:
        total = None
        for t_name, s_name in self.pairs:
            t = self._t_feats[t_name].detach().float()
            s = self.adapters[self._key(t_name, s_name)](self._s_feats[s_name].float())
            if t.dim() == 4 and s.shape[-2:] != t.shape[-2:]:
                s = F.adaptive_avg_pool2d(s, (int(t.shape[-2]), int(t.shape[-1])))
            elif t.dim() == 3 and s.shape[1] != t.shape[1]:
                s = F.adaptive_avg_pool1d(s.transpose(1, 2), t.shape[1]).transpose(1, 2)
            term = F.mse_loss(s, t)
            total = term if total is None else total + term
        if total is None:
            raise ConfigError("feature_kd: no layer pairs given")
        return total / len(self.pairs)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
