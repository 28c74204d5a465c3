"""Import ONNX Runtime's Python tools without importing torch.

`onnxruntime/tools/__init__.py` imports torch whenever torch is installed (for a PyTorch export helper the
package stage never uses), which costs seconds per command. The tools package is registered here without
running that `__init__`; its one export (`infer_input_info`) is still resolved on first access.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_PKG = "onnxruntime.tools"


def _lazy_attr(name: str) -> Any:
    if name == "infer_input_info":
        return importlib.import_module(f"{_PKG}.pytorch_export_helpers").infer_input_info
    raise AttributeError(f"module {_PKG!r} has no attribute {name!r}")


def tool(module: str) -> types.ModuleType:
    """`tool("convert_onnx_models_to_ort")` -> the module `onnxruntime.tools.convert_onnx_models_to_ort`."""
    if _PKG not in sys.modules:
        spec = importlib.util.find_spec(_PKG)
        if spec is None:
            raise ImportError("onnxruntime.tools is not installed")
        pkg = importlib.util.module_from_spec(spec)
        pkg.__getattr__ = _lazy_attr  # type: ignore[method-assign]  # PEP 562
        pkg.have_torch = importlib.util.find_spec("torch")  # type: ignore[attr-defined]
        sys.modules[_PKG] = pkg
    return importlib.import_module(f"{_PKG}.{module}")
