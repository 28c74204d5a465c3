"""PruneConfig: the frozen configuration of the prune stage (field names = recipe keys = CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..fidelity.config import CompareConfig, state_tuple

CRITERIA = ("l1", "l2", "magnitude", "bn", "activation", "taylor")
DEFAULT_MAX_DROP = 0.02  # 1 - agreement / 1 - balanced cosine / recall loss on the worst output


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how.

    ratio: fraction of the channels (units, heads) removed from every prunable group, in [0, 1): an upper bound.
    target_macs: fraction of the input model's MACs to keep, in (0, 1); groups are ranked globally: a lower bound
      on what is kept. With neither, the largest reduction inside max_drop is searched (needs data).
    criterion: l1 | l2 | magnitude (prune norms below alpha x the group's max) | bn (BatchNorm |gamma|) |
        activation (mean |activation| x consumer weight norm; needs calibration data) | taylor (first-order
        Taylor importance of a label-free output probe, through PyTorch; needs calibration data).
    alpha: magnitude threshold, in (0, 1).
    reconstruct: with calibration data, re-fit consumer weights by least squares and re-match BatchNorm statistics.
    compensate: with calibration data, move each removed channel's mean contribution into its consumers' biases.
    round_to: kept channels are a multiple of this (None: the target profile's, else 8).
    skip: node names whose output channels are never pruned.
    min_keep: fraction of each group that is always kept, in (0, 1].
    samples: calibration samples used for activation statistics and reconstruction.
    metric / detection / state: how the pruned model is compared with the input on every output
      (edgecompress.fidelity; see QuantizeConfig).
    max_drop: largest drop accepted on the worst output (0.02 = 2 %; 1 accepts anything). A reduction outside it is
      backed off (bisection towards the input model) to the largest one inside; none inside: nothing is written.
    recover: distil the pruned model from the input model on unlabeled data (PyTorch, edgecompress.distill.recover)
      before the budget is checked; the requested reduction is then kept as it is (no back-off).
    recover_steps / recover_batch_size / recover_lr: the recovery's optimizer steps, batch and AdamW learning rate.
    recover_synthetic: fraction of each image batch replaced by procedural images during recovery, in [0, 1).
    device: auto | cpu | cuda, for the recovery. resume: continue a killed recovery from its state file.
    """

    ratio: float | None = None
    target_macs: float | None = None
    criterion: str = "l2"
    alpha: float = 0.05
    reconstruct: bool = True
    compensate: bool = True
    round_to: int | None = None
    skip: tuple[str, ...] = ()
    min_keep: float = 0.1
    samples: int = 128
    metric: str = "auto"
    detection: str = ""
    state: tuple[str, ...] = ()
    max_drop: float = DEFAULT_MAX_DROP
    recover: bool = False
    recover_steps: int = 300
    recover_batch_size: int = 32
    recover_lr: float = 5e-4
    recover_synthetic: float = 0.0
    device: str = "auto"
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip", tuple(self.skip or ()))
        if self.criterion not in CRITERIA:
            raise ConfigError(f"criterion must be one of {', '.join(CRITERIA)}; got {self.criterion!r}")
        if self.ratio is not None and self.target_macs is not None:
            raise ConfigError("ratio and target_macs are exclusive; give one of them")
        if self.ratio is not None:
            _number("ratio", self.ratio)
            if not 0 <= self.ratio < 1:
                raise ConfigError(f"ratio must be in [0, 1) (the fraction of channels removed); got {self.ratio!r}")
        if self.target_macs is not None:
            _number("target_macs", self.target_macs)
            if not 0 < self.target_macs < 1:
                raise ConfigError(f"target_macs must be in (0, 1) (the fraction of MACs kept); got {self.target_macs!r}")
        _number("alpha", self.alpha)
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1); got {self.alpha!r}")
        if not isinstance(self.reconstruct, bool):
            raise ConfigError(f"reconstruct must be true or false; got {self.reconstruct!r}")
        if self.round_to is not None and (isinstance(self.round_to, bool) or not isinstance(self.round_to, int)
                                          or not 1 <= self.round_to <= 256):
            raise ConfigError(f"round_to must be an integer in 1..256; got {self.round_to!r}")
        if not all(isinstance(s, str) and s for s in self.skip):
            raise ConfigError(f"skip must be a list of node names; got {list(self.skip)!r}")
        _number("min_keep", self.min_keep)
        if not 0 < self.min_keep <= 1:
            raise ConfigError(f"min_keep must be in (0, 1]; got {self.min_keep!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"samples must be a positive integer; got {self.samples!r}")
        object.__setattr__(self, "state", state_tuple(self.state))
        CompareConfig(self.metric, self.detection, self.state)  # validates metric / detection / state
        for name in ("recover", "resume"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false; got {getattr(self, name)!r}")
        for name in ("recover_steps", "recover_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer; got {v!r}")
        _number("recover_lr", self.recover_lr)
        if not 0 < self.recover_lr < 1:
            raise ConfigError(f"recover_lr must be in (0, 1); got {self.recover_lr!r}")
        _number("recover_synthetic", self.recover_synthetic)
        if not 0 <= self.recover_synthetic < 1:
            raise ConfigError(f"recover_synthetic must be in [0, 1); got {self.recover_synthetic!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda; got {self.device!r}")
        if self.recover and (self.searches or self.criterion == "magnitude" and self.target_macs is None):
            raise ConfigError("recover needs the reduction to recover from: give ratio or target_macs")
        _number("max_drop", self.max_drop)
        if not 0 <= self.max_drop <= 1:
            raise ConfigError(f"max_drop must be a fraction in [0, 1] (0.02 = 2 %, 1 accepts anything); "
                              f"got {self.max_drop!r}")

    @property
    def searches(self) -> bool:
        """No reduction asked for: the largest one inside max_drop is searched."""
        return self.ratio is None and self.target_macs is None and self.criterion != "magnitude"

    @property
    def compare(self) -> CompareConfig:
        return CompareConfig(self.metric, self.detection, self.state)


def _number(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ConfigError(f"{name} must be a number; got {v!r}")
