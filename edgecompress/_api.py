"""Stage packages that are also callable.

`edgecompress.quantize` is both a subpackage and a public function (ARCHITECTURE.md's API). Once the subpackage
is imported, Python binds the *module* to `edgecompress.quantize`, so `edgecompress.quantize(...)` would fail
depending on import order. Each stage package calls `callable_module(__name__, "quantize")` so that calling the
module calls the function: `edgecompress.quantize(...)` then works whatever was imported first.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def callable_module(module_name: str, func_name: str) -> None:
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, func_name)(*args, **kwargs)

    _CallableModule.__name__ = f"{func_name}_module"
    module.__class__ = _CallableModule


def lazy_exports(module_name: str, names: dict[str, str]) -> None:
    """Let package `module_name` import the attributes `names` (name -> submodule) on first use (PEP 562), so
    that `--help` and reading a recipe (which needs only the config classes) do not load torch, onnx or ORT."""
    import importlib

    module = sys.modules[module_name]

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{module_name}.{names[name]}"), name)
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
