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
