"""Which channels to keep: uniform ratio, magnitude threshold, or a global ranking to a MACs target."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .groups import Analysis, Group


def group_round(g: Group, round_to: int) -> int:
    """Rounding unit in group channels: heads are whole already; channels round to multiples of round_to."""
    return 1 if g.kind == "heads" else round_to


def kept_count(g: Group, keep: int, round_to: int, min_keep: float) -> int:
    r = group_round(g, round_to)
    keep = max(keep, math.ceil(min_keep * g.size), 1)
    if r > 1:
        keep = math.ceil(keep / r) * r
    return min(keep, g.size)


def one_unit_counts(analysis: Analysis, gids: list[int], round_to: int, min_keep: float) -> dict[int, int]:
    """Group id -> channels kept when the group alone loses one rounding unit (groups that cannot are left out)."""
    out = {}
    for gid in gids:
        g = analysis.groups[gid]
        k = kept_count(g, g.size - group_round(g, round_to), round_to, min_keep)
        if k < g.size:
            out[gid] = k
    return out


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:k])


def make_plan(analysis: Analysis, scores: Mapping[int, np.ndarray], counts: Mapping[int, int]) -> dict[int, np.ndarray]:
    """Group id -> sorted kept indices (the top-scored channels), only for groups that lose channels."""
    return {gid: _top(scores[gid], k) for gid, k in counts.items() if k < analysis.groups[gid].size}


def select_ratio(analysis: Analysis, scores: Mapping[int, np.ndarray], ratio: float, round_to: int,
                 min_keep: float) -> dict[int, int]:
    out = {}
    for gid in scores:
        g = analysis.groups[gid]
        out[gid] = kept_count(g, g.size - int(math.floor(ratio * g.size + 1e-9)), round_to, min_keep)
    return out


def select_magnitude(analysis: Analysis, scores: Mapping[int, np.ndarray], alpha: float, round_to: int,
                     min_keep: float, max_ratio: float | None) -> dict[int, int]:
    out = {}
    for gid, s in scores.items():
        g = analysis.groups[gid]
        n_rm = int((s < alpha * float(s.max())).sum()) if s.size else 0
        if max_ratio is not None:
            n_rm = min(n_rm, int(math.floor(max_ratio * g.size)))
        out[gid] = kept_count(g, g.size - n_rm, round_to, min_keep)
    return out


class MacModel:
    """MACs as a function of the kept channels: each compute node scales with the kept fraction of the
    spaces it reads (and writes), from the per-node MACs of the census."""

    def __init__(self, analysis: Analysis, per_node: Mapping[str, int], total: int) -> None:
        self.analysis = analysis
        self.total = int(total)
        self.terms = []
        fixed = int(total)
        for dep in analysis.macs:
            base = per_node.get(dep.node)
            if base is None:
                continue
            fixed -= base
            self.terms.append((base, dep))
        self.fixed = fixed

    def frac(self, space: int, counts: Mapping[int, int]) -> float:
        gid = self.analysis.space_group[space]
        return counts.get(gid, self.analysis.groups[gid].size) / self.analysis.groups[gid].size

    def __call__(self, counts: Mapping[int, int]) -> int:
        total = float(self.fixed)
        for base, dep in self.terms:
            f = 1.0
            if dep.in_segs:
                n = sum(c for _, c in dep.in_segs)
                f = sum(c * self.frac(s, counts) for s, c in dep.in_segs) / n
            if dep.out_space is not None:
                f *= self.frac(dep.out_space, counts)
            total += base * f
        return int(round(total))


def select_target_macs(analysis: Analysis, scores: Mapping[int, np.ndarray], target: float, round_to: int,
                       min_keep: float, macs: MacModel) -> tuple[dict[int, int], list[str]]:
    """Global ranking: scores normalized by their group's mean; one threshold for all groups, found by bisection
    so that the predicted MACs just reach target x the input's MACs."""
    z = {gid: (s / s.mean() if s.size and s.mean() > 0 else np.ones_like(s)) for gid, s in scores.items()}

    def counts_at(t: float) -> dict[int, int]:
        return {gid: kept_count(analysis.groups[gid], int((zz >= t).sum()), round_to, min_keep) for gid, zz in z.items()}

    goal = target * macs.total
    lo, hi = 0.0, max((float(zz.max()) for zz in z.values() if zz.size), default=1.0) + 1e-9
    best = counts_at(lo)
    if macs(best) <= goal:
        return best, []
    for _ in range(60):
        mid = (lo + hi) / 2
        c = counts_at(mid)
        if macs(c) <= goal:
            hi, best = mid, c
        else:
            lo = mid
    best = counts_at(hi)
    notes = []
    got = macs(best)
    if got > goal * 1.001:
        notes.append(f"target_macs {target:g} not reachable with min_keep={min_keep:g}, round_to={round_to}: "
                     f"predicted {got / macs.total:.3f} of the MACs kept")
    return best, notes

