"""Statistics on top of the runner's raw numbers: A/B ratios from interleaved rounds and their spread."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .report import RatioResult


def ratio_spread(ratios: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Spread of per-round ratios: p10/p25/p75/p90, IQR relative to the median, min/max."""
    a = np.asarray(ratios, dtype=np.float64)
    q = np.percentile(a, [10, 25, 50, 75, 90])
    med = float(q[2])
    return {"p10": float(q[0]), "p25": float(q[1]), "p75": float(q[3]), "p90": float(q[4]),
            "iqr_rel": float((q[3] - q[1]) / med) if med > 0 else float("inf"),
            "min": float(a.min()), "max": float(a.max())}


def interleaved_ratios(paths: Sequence[str], round_latency_ms: Sequence[Sequence[float]], *, threads: int,
                       block: int) -> list[RatioResult]:
    """Per round, latency of model i over the baseline's (model 0) in the same round; median and spread."""
    base = np.asarray(round_latency_ms[0], dtype=np.float64)
    out = []
    for path, lat in zip(paths[1:], round_latency_ms[1:], strict=True):
        r = np.asarray(lat, dtype=np.float64) / np.maximum(base, 1e-9)
        out.append(RatioResult(model=path, baseline=paths[0], threads=threads, ratio_p50=float(np.median(r)),
                               ratio_mean=float(r.mean()), spread=ratio_spread(r), rounds=len(r), block=block))
    return out


def block_size(runs: int) -> int:
    """Runs per model per round: 1 (turns as short as possible follow the machine's load best) up to 500 runs,
    then enough to keep about 500 rounds."""
    return max(1, runs // 500)
