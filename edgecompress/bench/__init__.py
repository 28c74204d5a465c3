"""Benchmark ONNX models under ONNX Runtime: locally (own subprocess per model), over SSH, on Android (adb),
or under qemu arm64 emulation (output parity only).

    from edgecompress.bench import BenchConfig, bench
    report = bench(["fp32.onnx", "int8.onnx"], BenchConfig(runs=100), data="calibration_data/mnist_eval.npz")
    report.to_dict()  # {"models": [...], "ratios": [...], ...}

Importing this package does not import torch.
"""

from typing import TYPE_CHECKING

from .._api import callable_module, lazy_exports
from .config import BenchConfig, RemoteSpec, parse_remote, parse_threads

if TYPE_CHECKING:
    from .core import bench
    from .emulation import EMULATION_NOTE, emulation_root, setup_emulation
    from .report import BenchReport, ModelResult, RatioResult

__all__ = ["BenchConfig", "BenchReport", "ModelResult", "RatioResult", "RemoteSpec", "bench", "parse_remote",
           "parse_threads", "setup_emulation", "emulation_root", "EMULATION_NOTE"]

lazy_exports(__name__, {"bench": "core", "EMULATION_NOTE": "emulation", "emulation_root": "emulation",
                        "setup_emulation": "emulation", "BenchReport": "report", "ModelResult": "report",
                        "RatioResult": "report"})
callable_module(__name__, "bench")
