"""DistillConfig: the frozen, validated options of the distill stage (field names = recipe keys = CLI flags)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("kd", "cosine", "mse")
DEVICES = ("auto", "cpu", "cuda")
_DERIVE_RE = re.compile(r"^(width|depth)=([0-9]*\.?[0-9]+)$")


def parse_derivation(text: str) -> tuple[str, float]:
    """`width=0.5` -> ("width", 0.5); `depth=2` -> ("depth", 2.0). Raises ConfigError naming the field."""
    m = _DERIVE_RE.match(text.strip().replace(" ", ""))
    if not m:
        raise ConfigError(f"student_from_teacher must be width=F (0<F<1) or depth=K (integer >= 2), got {text!r}")
    kind, value = m.group(1), float(m.group(2))
    if kind == "width" and not 0 < value < 1:
        raise ConfigError(f"student_from_teacher width must be in (0, 1), got {value:g}")
    if kind == "depth" and (value < 2 or value != int(value)):
        raise ConfigError(f"student_from_teacher depth must be an integer >= 2 (keep every k-th block), got {value:g}")
    return kind, value


def parse_feature_pair(text: str) -> tuple[str, str]:
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ConfigError(f"feature_kd entries must be TEACHER_LAYER:STUDENT_LAYER, got {text!r}")
    return parts[0].strip(), parts[1].strip()


@dataclass(frozen=True)
class DistillConfig:
    """Options of `edgecompress distill` (see docs/distill.md).

    teacher / student are model SPECs (`path/file.py:factory` or `package.module:factory`); exactly one of
    `student` and `student_from_teacher` (`width=0.5` | `depth=2`) is given. `alpha` weighs the KD term against
    cross-entropy on hard labels (alpha=1: pure soft targets, labels not needed).
    """

    teacher: str
    student: str | None = None
    teacher_weights: str | None = None
    student_weights: str | None = None
    student_from_teacher: str | None = None
    student_from_pruned: str | None = None
    epochs: int = 40  # measured: bench/kd_gain.py, docs/distill.md "Defaults"
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: int = 0
    temperature: float = 4.0
    alpha: float = 0.9
    loss: str = "kd"
    feature_kd: tuple[str, ...] = ()
    feature_weight: float = 1.0
    val_fraction: float = 0.1
    augment_shift: int = 0
    augment_rotate: float = 0.0
    augment_scale: float = 0.0
    qat: bool = False
    qat_epochs: int = 3
    qat_lr: float = 5e-4
    device: str = "auto"
    amp: bool = True
    resume: bool = False
    seed: int = 0
    deterministic: bool = True
    max_samples: int | None = None
    num_classes: int | None = field(default=None)
    # also train the same student (same initial weights, budget, data, augmentation) on hard labels only
    # (alpha 0, no feature hints) and report the measured KD gain; doubles the training time
    compare_scratch: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, str) or ":" not in self.teacher:
            raise ConfigError(f"teacher must be a SPEC path/file.py:factory or package.module:factory, "
                              f"got {self.teacher!r}")
        sources = [v for v in (self.student, self.student_from_teacher, self.student_from_pruned) if v is not None]
        if len(sources) != 1:
            raise ConfigError("give exactly one of student (a SPEC), student_from_teacher (width=F | depth=K) and "
                              "student_from_pruned (a model pruned by `edgecompress prune`)")
        if self.student_from_pruned is not None:
            if not isinstance(self.student_from_pruned, str) or not self.student_from_pruned:
                raise ConfigError(f"student_from_pruned must be the path of an .onnx model, "
                                  f"got {self.student_from_pruned!r}")
            if self.student_weights is not None:
                raise ConfigError("student_weights is only for student (a SPEC); a student from a pruned model "
                                  "starts from the pruned model's weights")
        if self.student is not None and ":" not in self.student:
            raise ConfigError(f"student must be a SPEC path/file.py:factory or package.module:factory, "
                              f"got {self.student!r}")
        if self.student_from_teacher is not None:
            parse_derivation(self.student_from_teacher)
            if self.student_weights is not None:
                raise ConfigError("student_weights is only for student (a SPEC); a derived student starts from "
                                  "the teacher's weights")
        object.__setattr__(self, "feature_kd", tuple(self.feature_kd or ()))
        for pair in self.feature_kd:
            parse_feature_pair(pair)
        _int(self, "epochs", 1)
        _int(self, "batch_size", 1)
        _int(self, "warmup_epochs", 0)
        _int(self, "qat_epochs", 1)
        _int(self, "seed", 0)
        _int(self, "augment_shift", 0)
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"warmup_epochs must be < epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.max_samples is not None:
            _int(self, "max_samples", 2)
        if self.num_classes is not None:
            _int(self, "num_classes", 2)
        for name in ("lr", "qat_lr", "temperature"):
            _pos(self, name)
        if not _num(self.augment_rotate) or not 0 <= self.augment_rotate <= 180:
            raise ConfigError(f"augment_rotate must be degrees in [0, 180], got {self.augment_rotate!r}")
        if not _num(self.augment_scale) or not 0 <= self.augment_scale < 1:
            raise ConfigError(f"augment_scale must be a zoom fraction in [0, 1), got {self.augment_scale!r}")
        for name in ("weight_decay", "feature_weight"):
            v = getattr(self, name)
            if not _num(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if not isinstance(self.compare_scratch, bool):
            raise ConfigError(f"compare_scratch must be true or false, got {self.compare_scratch!r}")
        if self.compare_scratch and self.loss != "kd":
            raise ConfigError(f"compare_scratch needs loss kd (a scratch run trains on hard labels); got loss "
                              f"{self.loss!r}")
        if not _num(self.momentum) or not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not _num(self.alpha) or not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1] (weight of the KD term; 1 = soft targets only), "
                              f"got {self.alpha!r}")
        if not _num(self.val_fraction) or not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)} (kd: logits; cosine/mse: embeddings), "
                              f"got {self.loss!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")

    @property
    def augments(self) -> bool:
        """True when training inputs are randomly transformed (the teacher must then see each batch)."""
        return bool(self.augment_shift or self.augment_rotate or self.augment_scale)

    @property
    def derivation(self) -> tuple[str, float] | None:
        return parse_derivation(self.student_from_teacher) if self.student_from_teacher else None

    @property
    def feature_pairs(self) -> list[tuple[str, str]]:
        return [parse_feature_pair(p) for p in self.feature_kd]


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(cfg: DistillConfig, name: str, lo: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")


def _pos(cfg: DistillConfig, name: str) -> None:
    v = getattr(cfg, name)
    if not _num(v) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
