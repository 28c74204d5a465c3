"""The fidelity budget of prune: the requested reduction is an upper bound; outside max_drop it is backed off by
bisection towards the input model, and with no reduction requested the largest one inside max_drop is searched.
Every tried point (MACs and parameters kept, worst-output drop, measured speed) makes the curve of the report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx

from ..fidelity import FidelityReport

STEPS = 6  # bisection steps after the first point: resolution 1/64 of the requested reduction
EXTRA = 8  # with nothing inside after STEPS, keep halving towards the smallest reduction the selection can make


@dataclass
class Candidate:
    """One pruned model built for one selection level."""

    level: float  # the reduction asked of the selection: ratio removed, or 1 - MACs fraction targeted
    counts: dict[int, int]  # group id -> channels kept
    keep: dict[int, Any]
    model: onnx.ModelProto
    fidelity: FidelityReport | None
    fidelity_raw: FidelityReport | None
    reconstructed: tuple[str, ...]
    bn_updated: tuple[str, ...]
    macs_kept: float
    params_kept: float
    notes: list[str] = field(default_factory=list)

    def within(self, max_drop: float) -> bool:
        return self.fidelity is None or self.fidelity.meets(max_drop)


@dataclass(frozen=True)
class CurvePoint:
    level: float
    macs_kept: float
    params_kept: float
    drop: float | None
    metric: str
    output: str
    within: bool
    chosen: bool = False
    speedup: float | None = None  # input model latency / this one's, measured side by side (None: not measured)

    def to_dict(self) -> dict[str, Any]:
        return {"level": round(self.level, 5), "macs_kept": round(self.macs_kept, 4),
                "params_kept": round(self.params_kept, 4),
                "drop": None if self.drop is None else round(self.drop, 5), "metric": self.metric,
                "output": self.output, "within_budget": self.within, "chosen": self.chosen,
                "speedup": None if self.speedup is None else round(self.speedup, 3)}


def point(c: Candidate, max_drop: float, *, chosen: bool = False, speedup: float | None = None) -> CurvePoint:
    w = c.fidelity.worst if c.fidelity is not None else None
    return CurvePoint(c.level, c.macs_kept, c.params_kept, None if c.fidelity is None else c.fidelity.drop,
                      w.primary if w else "-", w.name if w else "-", c.within(max_drop), chosen, speedup)


def find(build: Callable[[float, dict[int, int]], Candidate], counts_at: Callable[[float], dict[int, int]],
         full: Mapping[int, int], top: float, max_drop: float, *, first: bool, steps: int = STEPS,
         ) -> tuple[Candidate | None, list[Candidate]]:
    """The candidate with the largest reduction in [0, top] inside max_drop (fidelity assumed to fall as the
    reduction grows), and every candidate built. `first`: try `top` itself before bisecting (the user asked for
    it); a level whose selection keeps every channel is inside the budget by definition and builds nothing. When
    the bisection found nothing inside, the reduction keeps halving down to the smallest the selection can make."""
    tried: dict[tuple, Candidate] = {}
    order: list[Candidate] = []
    best: Candidate | None = None

    def at(level: float) -> Candidate | None:
        counts = counts_at(level)
        if all(counts.get(g, n) >= n for g, n in full.items()):
            return None
        key = tuple(sorted(counts.items()))
        if key not in tried:
            tried[key] = build(level, counts)
            order.append(tried[key])
        return tried[key]

    ok, bad = 0.0, top
    if first:
        c = at(top)
        if c is None or c.within(max_drop):
            return c, order
    for _ in range(steps + (0 if first else 1)):
        mid = (ok + bad) / 2
        c = at(mid)
        if c is None or c.within(max_drop):
            ok = mid
            if c is not None and (best is None or c.macs_kept < best.macs_kept):
                best = c
        else:
            bad = mid
    for _ in range(EXTRA if best is None else 0):  # nothing inside yet: try ever smaller reductions
        bad /= 2
        c = at(bad)
        if c is None:
            break
        if c.within(max_drop):
            best = c
            break
    return best, order


GREEDY_TRIALS = 8


def refine(build: Callable[[float, dict[int, int]], Candidate], full: Mapping[int, int], one_unit: Mapping[int, int],
           max_drop: float) -> tuple[Candidate | None, list[Candidate]]:
    """When even the global ranking's smallest step is outside the budget: the sensitivity of every group measured
    on its own (one rounding unit of its lowest-ranked channels removed), then the groups inside the budget are
    combined greedily, least drop per MAC saved first, as long as the combination stays inside."""
    probes = []
    for gid, k in one_unit.items():
        counts = dict(full)
        counts[gid] = k
        probes.append((gid, build(0.0, counts)))
    tried = [c for _, c in probes]
    ok = sorted(((gid, c) for gid, c in probes if c.within(max_drop)),
                key=lambda gc: (gc[1].fidelity.drop if gc[1].fidelity else 0.0) / max(1e-9, 1 - gc[1].macs_kept))
    if not ok:
        return None, tried
    best = min((c for _, c in ok), key=lambda c: c.macs_kept)
    cur = dict(best.counts)
    for gid, _ in ok[:GREEDY_TRIALS + 1]:
        if cur.get(gid, full[gid]) == one_unit[gid]:
            continue
        trial = dict(cur)
        trial[gid] = one_unit[gid]
        c = build(0.0, trial)
        tried.append(c)
        if c.within(max_drop) and c.macs_kept < best.macs_kept:
            best, cur = c, trial
    return best, tried
