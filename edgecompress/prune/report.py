"""PruneReport: what was pruned, why the rest was not, and what it cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..artifact import config_to_dict

if TYPE_CHECKING:
    from ..fidelity import FidelityReport
    from .search import CurvePoint


@dataclass(frozen=True)
class GroupReport:
    id: int
    name: str
    kind: str  # channels | units | heads
    unit: int  # tensor indices per channel (head width for heads)
    channels_before: int
    channels_after: int
    members: tuple[str, ...]
    criterion_values: tuple[float, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True)
class UnprunableGroup:
    name: str
    kind: str
    channels: int
    members: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class PruneReport:
    criterion: str
    mode: str  # ratio | target_macs | magnitude | search
    round_to: int
    groups: tuple[GroupReport, ...]
    unprunable: tuple[UnprunableGroup, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    fidelity: FidelityReport | None = None  # pruned vs input model, every output (edgecompress.fidelity)
    fidelity_without_reconstruction: FidelityReport | None = None
    reconstructed: tuple[str, ...] = ()
    bn_reestimated: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    max_drop: float | None = None
    curve: tuple[CurvePoint, ...] = ()  # every reduction tried, by MACs kept (edgecompress.prune.search)
    recovery: dict[str, Any] | None = None  # --recover: steps, time, device, loss, fidelity before recovery

    @property
    def macs_kept(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def params_kept(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = config_to_dict(self)
        for key in ("fidelity", "fidelity_without_reconstruction"):
            f = getattr(self, key)
            d[key] = f.to_dict() if f is not None else None
        d["curve"] = [p.to_dict() for p in self.curve]
        d["macs_kept"] = self.macs_kept
        d["params_kept"] = self.params_kept
        return d
