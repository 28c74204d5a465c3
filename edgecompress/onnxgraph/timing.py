"""Side-by-side latency: models are run in interleaved rounds on the same feed, so machine load hits all alike.

The ratio of two models is the median over rounds of their per-round latency ratio (robust to load drifting
during the measurement); absolute medians are reported too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .runtime import make_session


@dataclass(frozen=True)
class Timing:
    median_ms: dict[str, float]
    rounds: int
    # (slow, fast) -> median per-round ratio; set by time_side_by_side, outside __init__, repr and comparison
    _ratios: dict[tuple[str, str], float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def ratio(self, slow: str, fast: str) -> float:
        """How many times faster `fast` is than `slow` (median of per-round ratios)."""
        return self._ratios[(slow, fast)]

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": {k: round(v, 3) for k, v in self.median_ms.items()}, "rounds": self.rounds}


def time_side_by_side(models: Mapping[str, Any], feed: dict[str, np.ndarray], *, threads: int = 1,
                      min_rounds: int = 7, max_rounds: int = 60, budget_s: float = 6.0) -> Timing:
    sessions = {k: make_session(v if isinstance(v, bytes) or hasattr(v, "graph") else str(v), threads=threads, origin=k)
                for k, v in models.items()}
    names = list(sessions)
    for s in sessions.values():  # warm-up
        s.run(None, feed)
        s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in names}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - start < budget_s):
        order = names[rounds % len(names):] + names[: rounds % len(names)]
        for k in order:
            t0 = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    t = Timing({k: float(np.median(v)) * 1e3 for k, v in times.items()}, rounds)
    ratios = {}
    for a in names:
        for b in names:
            ratios[(a, b)] = float(np.median(np.asarray(times[a]) / np.asarray(times[b])))
    object.__setattr__(t, "_ratios", ratios)
    return t
