"""Android over adb: push ONNX Runtime's `onnxruntime_perf_test` (built for Android) and the model, run it,
parse its text output into the same fields as the runner's JSON.

Android devices rarely have python, so the runner is not used here: `--perf-test PATH` gives the
perf_test binary (from an onnxruntime Android build, `build/Android/Release/onnxruntime_perf_test`).
Several models run in alternating rounds (A B A B ...) of `block` runs each for ratios with their spread.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RemoteError, UnsupportedError
from ..fsutil import require_file
from ..targets import TargetProfile
from .config import BenchConfig
from .report import ModelResult, RatioResult
from .stats import interleaved_ratios
from .transport import one_line

DEVICE_DIR = "/data/local/tmp/edgecompress"
EP_FLAGS = {"CPUExecutionProvider": "cpu", "XnnpackExecutionProvider": "xnnpack", "NnapiExecutionProvider": "nnapi",
            "QNNExecutionProvider": "qnn"}
_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_PATTERNS = {
    "session_create_s": rf"Session creation time cost:\s*{_NUM}\s*s",
    "first_run_ms": rf"First inference time cost:\s*{_NUM}\s*ms",
    "total_s": rf"Total inference time cost:\s*{_NUM}\s*s",
    "requests": rf"Total inference requests:\s*{_NUM}",
    "mean_ms": rf"Average inference time cost(?: total)?:\s*{_NUM}\s*ms",
    "run_time_s": rf"Total inference run time:\s*{_NUM}\s*s",
    "throughput_per_s": rf"Number of inferences per second:\s*{_NUM}",
    "cpu_percent": rf"(?:Avg|Total) CPU usage:\s*{_NUM}\s*%",
    "peak_bytes": rf"Peak working set size:\s*{_NUM}\s*bytes",
    "min_s": rf"Min Latency:\s*{_NUM}\s*s",
    "max_s": rf"Max Latency:\s*{_NUM}\s*s",
    "p50_s": rf"P50 Latency:\s*{_NUM}\s*s",
    "p90_s": rf"P90 Latency:\s*{_NUM}\s*s",
    "p95_s": rf"P95 Latency:\s*{_NUM}\s*s",
    "p99_s": rf"P99 Latency:\s*{_NUM}\s*s",
    "p999_s": rf"P999 Latency:\s*{_NUM}\s*s",
}


def parse_perf_test_output(text: str) -> dict[str, Any]:
    """Fields of `onnxruntime_perf_test` output (old and new formats), converted to the runner's units (ms, MB).

    Raises RemoteError when the text has no timing summary (the tool failed; its last lines are quoted).
    """
    raw: dict[str, float] = {}
    for key, pat in _PATTERNS.items():
        found = re.findall(pat, text)
        if found:
            raw[key] = float(found[-1])
    if "mean_ms" not in raw and "total_s" not in raw:
        raise RemoteError(f"onnxruntime_perf_test gave no timing summary: {one_line(text) or 'no output'}")
    n = int(raw.get("requests", 0))
    mean = raw.get("mean_ms", raw["total_s"] * 1e3 / n if n else float("nan"))
    lat = {"p50": raw.get("p50_s", float("nan")) * 1e3, "p90": raw.get("p90_s", float("nan")) * 1e3,
           "p95": raw.get("p95_s", float("nan")) * 1e3, "p99": raw.get("p99_s", float("nan")) * 1e3,
           "mean": mean, "std": None, "min": raw.get("min_s", float("nan")) * 1e3,
           "max": raw.get("max_s", float("nan")) * 1e3}
    m = re.search(r"using (\w+ExecutionProvider)", text)
    return {
        "latency_ms": lat, "runs": n,
        "throughput_per_s": raw.get("throughput_per_s", 1e3 / mean if mean else 0.0),
        "session_create_ms": raw["session_create_s"] * 1e3 if "session_create_s" in raw else None,
        "first_run_ms": raw.get("first_run_ms"),
        "peak_rss_mb": round(raw["peak_bytes"] / 2**20, 2) if "peak_bytes" in raw else None,
        "cpu_percent": raw.get("cpu_percent"),
        "providers": [m.group(1)] if m else [],
    }


class Adb:
    def __init__(self, serial: str = "", timeout_s: float = 900.0) -> None:
        exe = shutil.which("adb")
        if exe is None:
            raise UnsupportedError("adb not found", hint="install Android platform-tools (adb) and attach a device")
        self.base = [exe] + (["-s", serial] if serial else [])
        self.where = f"adb://{serial}"
        self.timeout_s = timeout_s

    def call(self, *args: str, timeout: float | None = None) -> str:
        try:
            proc = subprocess.run([*self.base, *args], capture_output=True, text=True,
                                  timeout=timeout or self.timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.where}: adb {args[0]} timed out") from None
        if proc.returncode != 0:
            raise RemoteError(f"{self.where}: adb {args[0]} failed: {one_line(proc.stderr or proc.stdout, 200)}",
                              hint="`adb devices` must list the device as 'device' (authorized)")
        return proc.stdout

    def check(self) -> None:
        state = self.call("get-state", timeout=15).strip()
        if state != "device":
            raise RemoteError(f"{self.where}: device state is {state!r}, not 'device'")


def device_attached() -> bool:
    """True when adb is installed and lists at least one authorized device (for tests and `--remote adb://`)."""
    exe = shutil.which("adb")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "devices"], capture_output=True, text=True, timeout=15).stdout
    except (subprocess.TimeoutExpired, OSError):
        return False
    return any(line.strip().endswith("\tdevice") for line in out.splitlines()[1:])


def perf_test_args(model: str, *, runs: int, threads: int, ep: str) -> list[str]:
    return ["-I", "-m", "times", "-r", str(runs), "-x", str(threads), "-e", ep, model]


def bench_adb(paths: Sequence[Path], config: BenchConfig, prof: TargetProfile, threads: Sequence[int],
              log: Callable[[str], None]) -> tuple[list[ModelResult], list[RatioResult], list[str]]:
    if not config.perf_test:
        raise ConfigError("the adb path needs perf_test: the onnxruntime_perf_test binary built for Android",
                          hint="pass --perf-test PATH (from an onnxruntime Android build)")
    binary = require_file(config.perf_test, "onnxruntime_perf_test")
    spec = config.remote_spec
    adb = Adb(spec.serial if spec else "", config.timeout_s)
    adb.check()
    ep_name = next((e for e in prof.execution_providers if e in EP_FLAGS), "CPUExecutionProvider")
    warnings = [] if ep_name == prof.execution_providers[0] else [
        f"onnxruntime_perf_test has no flag for {prof.execution_providers[0]}: ran {ep_name}"]
    adb.call("shell", f"mkdir -p {DEVICE_DIR}")
    adb.call("push", str(binary), f"{DEVICE_DIR}/onnxruntime_perf_test")
    adb.call("shell", f"chmod 755 {DEVICE_DIR}/onnxruntime_perf_test")
    remote_models = []
    for i, p in enumerate(paths):
        adb.call("push", str(p), f"{DEVICE_DIR}/m{i}.onnx")
        remote_models.append(f"{DEVICE_DIR}/m{i}.onnx")
    exe = f"{DEVICE_DIR}/onnxruntime_perf_test"

    def run(i: int, runs: int, t: int) -> dict[str, Any]:
        args = perf_test_args(remote_models[i], runs=runs, threads=t, ep=EP_FLAGS[ep_name])
        return parse_perf_test_output(adb.call("shell", " ".join(shlex.quote(a) for a in [exe, *args])))

    results, ratios = [], []
    try:
        for t in threads:
            for i, p in enumerate(paths):
                log(f"bench {p.name} ({t} threads) on {adb.where} with onnxruntime_perf_test -e {EP_FLAGS[ep_name]}")
                r = run(i, config.runs, t)
                results.append(ModelResult(
                    path=str(p), threads=t, latency_ms=r["latency_ms"], throughput_per_s=r["throughput_per_s"],
                    session_create_ms=r["session_create_ms"], first_run_ms=r["first_run_ms"],
                    peak_rss_mb=r["peak_rss_mb"], size_mb=round(p.stat().st_size / 2**20, 4),
                    providers=tuple(r["providers"] or [ep_name]),
                    ep_coverage={"source": "perf_test", "providers": r["providers"] or [ep_name]},
                    runs=r["runs"], requested_providers=prof.execution_providers, where=adb.where,
                    machine="android"))
            if len(paths) > 1 and config.interleave:
                block = max(5, config.runs // 10)
                rounds: list[list[float]] = [[] for _ in paths]
                for k in range(max(3, min(10, config.runs // block))):
                    order = list(range(len(paths)))[:: -1 if k % 2 else 1]
                    for i in order:
                        rounds[i].append(run(i, block, t)["latency_ms"]["p50"])
                ratios += interleaved_ratios([str(p) for p in paths], rounds, threads=t, block=block)
    finally:
        try:
            adb.call("shell", f"rm -rf {DEVICE_DIR}", timeout=30)
        except RemoteError:
            pass
    return results, ratios, warnings
