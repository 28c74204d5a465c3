"""User code named by a SPEC: `path/file.py:name` or `package.module:name` (model factories, data entry points).

One importer for every stage, so every SPEC behaves the same: a file is imported once per process (keyed by its
resolved path), `package.module` is found in the working directory too, and every failure — missing file,
import error, syntax error, an exception raised by the user's module, no such callable — is one `error` line
naming the SPEC.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import EdgecompressError


def short(exc: BaseException, limit: int = 240) -> str:
    """An exception's text on one line, cut to `limit` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def cwd_on_path() -> Iterator[None]:
    """Let `pkg.mod:name` find packages in the working directory (the console script does not add it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_callable(spec: str, what: str, *, error: type[EdgecompressError], noun: str) -> Callable[..., Any]:
    """The callable named by `spec` (already checked to have the form `module:name`).

    `what` starts every message (e.g. "model", "calibration data entry point"); `noun` names what the
    callable is for ("factory", "function").
    """
    mod_name, _, attr = str(spec).rpartition(":")
    try:
        if mod_name.endswith(".py"):
            module = _import_file(Path(mod_name), what, error)
        else:
            with cwd_on_path():
                module = importlib.import_module(mod_name)
    except EdgecompressError:
        raise
    except ImportError as exc:
        raise error(f"{what} {spec!r}: cannot import {mod_name!r} ({short(exc)})") from None
    except SyntaxError as exc:
        raise error(f"{what} {spec!r}: syntax error in {mod_name} line {exc.lineno}") from None
    except Exception as exc:  # user code run at import time
        raise error(f"{what} {spec!r}: importing {mod_name} raised {type(exc).__name__}: {short(exc)}") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise error(f"{what} {spec!r}: {mod_name} has no callable {attr!r} (unknown {noun})")
    return fn


def _import_file(path: Path, what: str, error: type[EdgecompressError]) -> Any:
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    key = f"_edgecompress_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    module = sys.modules.get(key)
    if module is not None:
        return module
    loader_spec = importlib.util.spec_from_file_location(key, path)
    if loader_spec is None or loader_spec.loader is None:
        raise error(f"{what} {path} cannot be imported")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[key] = module
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(key, None)
        raise
    return module
