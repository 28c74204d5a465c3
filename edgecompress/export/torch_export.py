"""Run torch.onnx.export quietly: the dynamo exporter first, the TorchScript exporter as a noted fallback.

Exporter chatter (prints, warnings, torch logging, C-level writes to fd 1/2) is captured into a string that the
report keeps (the CLI shows it with --debug) instead of spamming the user's terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UnsupportedError
from .config import InputSpec


class Captured:
    def __init__(self) -> None:
        self.text = ""


def _rebind_handlers(buf) -> None:
    """Handlers created during the capture (torch creates some lazily) were bound to `buf`: point them at stderr."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if type(h) is logging.StreamHandler and getattr(h, "stream", None) is buf:
                h.setStream(sys.stderr)


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Swallow stdout/stderr (Python and fd level), warnings and log records; keep them in `.text`."""
    cap = Captured()
    # a real file (not StringIO): parts of the exporter call .fileno() on sys.stdout / sys.stderr
    buf = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    handler = logging.StreamHandler(buf)
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    # torch's loggers hold stream handlers bound to whatever sys.stderr was when torch was imported
    swapped: list[tuple[logging.StreamHandler, Any]] = []
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and name.split(".")[0] in ("torch", "onnxscript", "onnx_ir"):
            for h in lg.handlers:
                # exactly StreamHandler: torch's trace handler (a subclass) manages and closes its own file
                if type(h) is logging.StreamHandler and h.stream is not None:
                    swapped.append((h, h.setStream(buf)))
    fds: list[tuple[int, int]] = []
    tmp = tempfile.TemporaryFile(mode="w+b")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for fd in (1, 2):
        try:
            fds.append((fd, os.dup(fd)))
            os.dup2(tmp.fileno(), fd)
        except OSError:
            pass
    root.handlers = [handler]
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(buf):
            warnings.simplefilter("always")
            try:
                yield cap
            finally:
                for w in caught:
                    buf.write(f"{w.category.__name__}: {w.message}\n")
    finally:
        with contextlib.suppress(Exception):
            if sys.__stdout__ is not None:
                sys.__stdout__.flush()
            if sys.__stderr__ is not None:
                sys.__stderr__.flush()
        for fd, saved in fds:
            os.dup2(saved, fd)
            os.close(saved)
        root.handlers = saved_handlers
        for h, stream in swapped:
            h.setStream(stream)
        _rebind_handlers(buf)
        tmp.seek(0)
        fd_text = tmp.read().decode("utf-8", "replace")
        tmp.close()
        buf.flush()
        buf.seek(0)
        cap.text = buf.read() + fd_text
        buf.close()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _short(exc: BaseException, limit: int = 300) -> str:
    """The root cause's type and first line (the exporter wraps it in a generic 'Failed to export' error)."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    first = next((ln for ln in _ANSI.sub("", str(root)).splitlines() if ln.strip()), "")
    text = f"{type(root).__name__}: {' '.join(first.split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def export_dynamo(model, args: tuple, specs: list[InputSpec], output_names: list[str], dest: Path,
                  opset: int | None) -> None:
    import torch

    dims: dict[str, Any] = {}
    dynamic_shapes = None
    if any(s.dynamic for s in specs) and not isinstance(model, torch.export.ExportedProgram):
        def dim(name: str):
            if name not in dims:
                dims[name] = torch.export.Dim(name)
            return dims[name]

        dynamic_shapes = tuple({a: dim(n) for a, n in s.dynamic.items()} or None for s in specs)
    kwargs: dict[str, Any] = {"dynamo": True, "input_names": [s.name for s in specs],
                              "output_names": output_names, "external_data": False, "optimize": True,
                              "verify": False, "report": False, "dynamic_shapes": dynamic_shapes}
    if opset is not None:
        kwargs["opset_version"] = opset
    prog = torch.onnx.export(model, args, None, **kwargs)
    if prog is None:  # dynamo=True always returns an ONNXProgram
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNXProgram")
    prog.save(str(dest), external_data=False)


def export_torchscript(model, args: tuple, specs: list[InputSpec], output_names: list[str], dest: Path,
                       opset: int | None) -> None:
    import torch

    dynamic_axes = {s.name: dict(s.dynamic) for s in specs if s.dynamic} or None
    kwargs: dict[str, Any] = {"dynamo": False, "input_names": [s.name for s in specs], "output_names": output_names,
                              "dynamic_axes": dynamic_axes, "do_constant_folding": True}
    if opset is not None:
        kwargs["opset_version"] = opset
    torch.onnx.export(model, args, str(dest), **kwargs)


def run_export(model, ts_model, args: tuple, specs: list[InputSpec], output_names: list[str], dest: Path, *,
               opset: int | None, exporter: str) -> tuple[str, list[str], str]:
    """Export to `dest` (`model` for dynamo: a module or an ExportedProgram; `ts_model` for TorchScript).

    Returns (exporter used, notices, captured exporter log).
    """
    cap = Captured()
    notices: list[str] = []
    logs: list[str] = []
    if exporter in ("auto", "dynamo"):
        try:
            with captured_output() as cap:
                export_dynamo(model, args, specs, output_names, dest, opset)
            logs.append(cap.text)
            return "dynamo", notices, "".join(logs)
        except Exception as exc:  # the dynamo exporter fails in many ways (graph breaks, unsupported ops)
            logs.append(cap.text + f"\ndynamo exporter failed: {type(exc).__name__}: {exc}\n")
            if exporter == "dynamo":
                err = UnsupportedError(f"the dynamo exporter failed: {_short(exc)}",
                                       hint="try --exporter torchscript, or --debug for the exporter log")
                err.exporter_log = "".join(logs)
                raise err from None
            notices.append(f"the dynamo exporter failed ({_short(exc, 200)}); "
                           "fell back to the TorchScript exporter")
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
    try:
        with captured_output() as cap:
            export_torchscript(ts_model, args, specs, output_names, dest, opset)
        logs.append(cap.text)
    except Exception as exc:
        logs.append(cap.text)
        first = f"; dynamo: {notices[0]}" if notices else ""
        err = UnsupportedError(f"the TorchScript exporter failed: {_short(exc)}{first}",
                               hint="re-run with --debug for the exporter log")
        err.exporter_log = "".join(logs)
        raise err from None
    return "torchscript", notices, "".join(logs)
