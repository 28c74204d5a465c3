"""edgecompress: turn a PyTorch model into a small, fast, verified edge release.

Public API (imported lazily, so `import edgecompress` stays light and torch-free):
    export, inspect, prune, quantize, distill, bench, package, verify, convert
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "export": ("edgecompress.export", "export"),
    "inspect": ("edgecompress.onnxgraph.inspect", "inspect"),
    "prune": ("edgecompress.prune", "prune"),
    "quantize": ("edgecompress.quantize", "quantize"),
    "distill": ("edgecompress.distill", "distill"),
    "bench": ("edgecompress.bench", "bench"),
    "package": ("edgecompress.package", "package"),
    "verify": ("edgecompress.package", "verify"),
    "convert": ("edgecompress.pipeline", "convert"),
    "get_target": ("edgecompress.targets", "get_target"),
    "load_data": ("edgecompress.data", "load_data"),
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgecompress' has no attribute {name!r}")
