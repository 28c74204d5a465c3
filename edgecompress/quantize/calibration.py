"""Calibration: activation ranges for static quantization, built on onnxruntime.quantization's calibrators.

* ``minmax`` and ``histogram`` run through `StreamingCalibrator`: ORT's calibrator augments the graph (every float
  input/output of every node becomes a graph output) and we stream the samples through its session, keeping only
  per-tensor running min/max (pass 1) and a fixed-size histogram (pass 2). Memory does not grow with the number of
  samples (ORT's own histogram calibrators keep every activation of every sample).
  ``histogram`` picks, per tensor, the clipping range that minimises the expected 8-bit quantization MSE
  (clipping error + rounding noise) over the histogram.
* ``percentile`` and ``entropy`` are ORT's calibrators unchanged (they keep activations: memory grows with samples).

The result is an ORT `TensorsData`, handed to `quantize_static` through its calibration cache.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import FeedData
from ..errors import RuntimeFailure

BINS = 2048
GRID = 48  # candidate clipping points per side in the MSE search


class FeedReader:
    """An ORT CalibrationDataReader over a FeedData, reporting progress per sample."""

    def __init__(self, data: FeedData, progress: Callable[[int], None] | None = None) -> None:
        self.data = data
        self.progress = progress
        self._it = iter(data)

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._it, None)
        if feed is not None and self.progress:
            self.progress(1)
        return feed

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def __len__(self) -> int:
        return self.data.n


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssMonitor:
    """Samples this process's resident memory in a background thread; `.peak_mb`, `.start_mb`."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssMonitor:
        self.start_mb = self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


@dataclass(frozen=True)
class CalibrationResult:
    method: str
    ranges: dict[str, tuple[float, float]]
    samples: int
    seconds: float
    peak_rss_mb: float
    rss_growth_mb: float
    tensors: int

    def stats(self) -> dict[str, Any]:
        return {"method": self.method, "samples": self.samples, "seconds": round(self.seconds, 3),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "rss_growth_mb": round(self.rss_growth_mb, 1),
                "tensors": self.tensors}

    def tensors_data(self):
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData

        return TensorsData(CalibrationMethod.MinMax, {k: (np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32))
                                                      for k, (lo, hi) in self.ranges.items()})

    def write_cache(self, path: Path) -> Path:
        from onnxruntime.quantization.calibrate import save_tensors_data

        save_tensors_data(self.tensors_data(), path)
        return path


def _ort_calibrator(model_path: Path, workdir: Path, method: str):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    cm = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
          "entropy": CalibrationMethod.Entropy, "histogram": CalibrationMethod.Percentile}[method]
    aug = workdir / f"augmented_{method}_{os.getpid()}.onnx"
    extra = {"symmetric": False} if method == "percentile" else {}
    try:
        return create_calibrator(model_path, None, augmented_model_path=aug.as_posix(), calibrate_method=cm,
                                 use_external_data_format=True, extra_options=extra)
    except Exception as exc:
        raise RuntimeFailure(f"ONNX Runtime could not prepare calibration: {' '.join(str(exc).split())[:300]}") from None


class StreamingCalibrator:
    """Two streaming passes over the data: running min/max, then a fixed-size histogram per tensor."""

    def __init__(self, model_path: Path, workdir: Path) -> None:
        self._cal = _ort_calibrator(model_path, workdir, "histogram")
        self.session = self._cal.infer_session
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tensors = sorted(self._cal.tensors_to_calibrate)

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self.tensors, {k: v for k, v in feed.items() if k in self.inputs})
        except Exception as exc:
            raise RuntimeFailure(f"ONNX Runtime failed during calibration: {' '.join(str(exc).split())[:300]}") \
                from None

    def minmax(self, data: FeedData, progress: Callable[[int], None] | None = None) -> dict[str, tuple[float, float]]:
        lo = {t: np.inf for t in self.tensors}
        hi = {t: -np.inf for t in self.tensors}
        for feed in data:
            for t, arr in zip(self.tensors, self._run(feed), strict=True):
                if arr.size:
                    lo[t] = min(lo[t], float(np.min(arr)))
                    hi[t] = max(hi[t], float(np.max(arr)))
            if progress:
                progress(1)
        return {t: (lo[t], hi[t]) if np.isfinite(lo[t]) else (0.0, 0.0) for t in self.tensors}

    def histograms(self, data: FeedData, ranges: dict[str, tuple[float, float]],
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        hists = {t: np.zeros(BINS, dtype=np.int64) for t in self.tensors}
        for feed in data:
            for t, arr in zip(self.tensors, self._run(feed), strict=True):
                lo, hi = ranges[t]
                if hi > lo and arr.size:
                    h, _ = np.histogram(arr, bins=BINS, range=(lo, hi))
                    hists[t] += h
            if progress:
                progress(1)
        return hists


def mse_optimal_range(hist: np.ndarray, lo: float, hi: float, levels: int = 255) -> tuple[float, float]:
    """The clip range [a, b] (a <= 0 <= b kept as ORT does) minimising expected quantization MSE over `hist`."""
    if not hi > lo or hist.sum() == 0:
        return lo, hi
    edges = np.linspace(lo, hi, len(hist) + 1)
    c = (edges[:-1] + edges[1:]) / 2
    h = hist.astype(np.float64)
    s0, s1, s2 = np.cumsum(h), np.cumsum(h * c), np.cumsum(h * c * c)
    tot0, tot1, tot2 = s0[-1], s1[-1], s2[-1]
    frac = np.linspace(0.05, 1.0, GRID)
    a_c = np.unique(np.minimum(lo * frac, 0.0)) if lo < 0 else np.array([lo])
    b_c = np.unique(np.maximum(hi * frac, 0.0)) if hi > 0 else np.array([hi])
    a, b = np.meshgrid(a_c, b_c, indexing="ij")
    ia = np.searchsorted(c, a, side="left")  # bins below a: [0, ia)
    ib = np.searchsorted(c, b, side="right")  # bins above b: [ib, B)

    def pre(s: np.ndarray, i: Any) -> np.ndarray:
        return np.where(i > 0, s[np.maximum(i - 1, 0)], 0.0)

    l0, l1, l2 = pre(s0, ia), pre(s1, ia), pre(s2, ia)
    u0, u1, u2 = tot0 - pre(s0, ib), tot1 - pre(s1, ib), tot2 - pre(s2, ib)
    clip_lo = l2 - 2 * a * l1 + a * a * l0
    clip_hi = u2 - 2 * b * u1 + b * b * u0
    inside = tot0 - l0 - u0
    step = (np.maximum(b, 0) - np.minimum(a, 0)) / levels
    err = clip_lo + clip_hi + inside * step * step / 12.0
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(a[i, j]), float(b[i, j])


def calibrate(model_path: Path, data: FeedData, method: str, workdir: Path,
              progress: Callable[[int], None] | None = None, *, both: bool = False) -> dict[str, CalibrationResult]:
    """Activation ranges of `model_path` over `data` with `method`.

    With `both=True` and method minmax/histogram, returns both results from one streaming run ({"minmax", "histogram"}).
    Progress counts one unit per sample per pass.
    """
    t0 = time.perf_counter()
    with RssMonitor() as mon:
        if method in ("minmax", "histogram"):
            cal = StreamingCalibrator(model_path, workdir)
            mm = cal.minmax(data, progress)
            t_mm = time.perf_counter() - t0
            peak_mm = mon.peak_mb
            out = {}
            if method == "minmax" or both:
                out["minmax"] = CalibrationResult("minmax", mm, data.n, t_mm, peak_mm, peak_mm - mon.start_mb,
                                                  len(mm))
            if method == "histogram" or both:
                hists = cal.histograms(data, mm, progress)
                rng = {t: mse_optimal_range(hists[t], *mm[t]) for t in cal.tensors}
                del hists
                mon.peak_mb = max(mon.peak_mb, _rss_mb())
                out["histogram"] = CalibrationResult("histogram", rng, data.n, time.perf_counter() - t0, mon.peak_mb,
                                                     mon.peak_mb - mon.start_mb, len(rng))
            del cal
            return out
        cal = _ort_calibrator(model_path, workdir, method)
        try:
            cal.collect_data(FeedReader(data, progress))
            td = cal.compute_data()
        except RuntimeFailure:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"ONNX Runtime {method} calibration failed: {' '.join(str(exc).split())[:300]}") \
                from None
        ranges = {k: (float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max()))
                  for k, v in td.data.items()}
        del cal
    return {method: CalibrationResult(method, ranges, data.n, time.perf_counter() - t0, mon.peak_mb,
                                      mon.peak_mb - mon.start_mb, len(ranges))}
