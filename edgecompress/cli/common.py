"""Shared CLI wiring: error handling, --json output, common options. Commands stay thin."""

from __future__ import annotations

import functools
import json
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from ..errors import EdgecompressError

_console = None


def console():
    """A rich console on stderr (human text and progress never go to stdout)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
    return _console


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    sys.stdout.flush()


def show_result(result: Any, as_json: bool, printer: Callable[[Any], None]) -> None:
    """A stage's StageResult: one JSON object (`{"ok": true, ...}`) with --json, else the command's printer."""
    if as_json:
        emit_json({"ok": True, **result.to_dict()})
    else:
        printer(result)


def _json_default(o: Any) -> Any:
    from ..artifact import config_to_dict

    if hasattr(o, "to_dict"):
        return o.to_dict()
    v = config_to_dict(o)
    if v is o:
        return str(o)
    return v


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(f)


def target_option(f: Callable) -> Callable:
    return click.option("--target", "target", default=None, metavar="T",
                        help="Target profile name (see `edgecompress targets`) or path to a .toml; default: host.")(f)


def metric_options(f: Callable) -> Callable:
    """--metric and --detection: how every output of a model is judged against its reference."""
    from ..fidelity.config import METRICS  # no numpy: the fidelity package loads its modules on first use

    f = click.option("--detection", default="", metavar="SPEC",
                     help="A detector's outputs: 'boxes=NAME,scores=NAME[,classes=NAME][,format=xyxy|xywh|cxcywh|"
                          "yxyx|offsets][,threshold=0.5][,iou=0.5]'; NAME[a:b] slices a combined output along its "
                          "channel axis. Those outputs are then judged by matched-detection recall (IoU >= iou).")(f)
    return click.option("--metric", type=click.Choice(METRICS), default="auto", show_default=True,
                        help="How every output is judged. auto: top-1 agreement for class scores (accuracy when the "
                             "data has labels), decision agreement for [1, 1] probabilities, balanced cosine (each "
                             "channel at its own scale) otherwise. top1 / accuracy / cosine / mse force one.")(f)


def compare_options(f: Callable) -> Callable:
    """--metric, --detection and --state: how the result is compared with its input on every output."""
    f = click.option("--state", "state", multiple=True, metavar="IN=OUT",
                     help="A stateful model's state input and the output that feeds it at the next step (repeatable): "
                          "evaluated in closed loop, each model fed its own state. Default: detected from names and "
                          "shapes (h/hn, state/stateN); 'none' switches it off.")(f)
    return metric_options(f)


def handle_errors(f: Callable) -> Callable:
    """Turn EdgecompressError into `error: ...` + hint on stderr (and a JSON error with --json), with its exit code.

    Anything unexpected is a bug: exit 1 with a one-line message (the traceback only with --debug).
    """

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        as_json = bool(kwargs.get("as_json"))
        try:
            return f(*args, **kwargs)
        except EdgecompressError as exc:
            if debug:
                traceback.print_exc()
            _report_error(exc.message, exc.hint, exc.exit_code, as_json, exc.to_dict())
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # we are leaving: a second Ctrl-C (or a signal still pending in native code) must not cut the
            # clean-up short and end the process by SIGINT instead of exit code 130
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _report_error("interrupted", "", 130, as_json, {"error": "Interrupted", "exit_code": 130})
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except MemoryError:
            _report_error("out of memory", "use fewer samples or a smaller batch", 1, as_json,
                          {"error": "MemoryError", "exit_code": 1})
            ctx.exit(1)
        except OSError as exc:
            if debug:
                traceback.print_exc()
            msg = f"{exc.strerror or exc}" + (f": {exc.filename}" if getattr(exc, "filename", None) else "")
            code = 2 if exc.errno in (2, 13, 20, 21, 30) else 1
            _report_error(msg, "check the paths and free disk space", code, as_json,
                          {"error": type(exc).__name__, "message": msg, "exit_code": code})
            ctx.exit(code)
        except Exception as exc:  # a bug: still one line unless --debug
            if debug:
                traceback.print_exc()
            msg = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            _report_error(msg, "re-run with --debug and report the trace", 1, as_json,
                          {"error": type(exc).__name__, "message": msg, "exit_code": 1})
            ctx.exit(1)

    return wrapper


def usage_error_json(exc: click.UsageError) -> None:
    """A click usage error (bad flag value, missing option, a --out that is a folder) under --json: still exactly
    one JSON object on stdout, like every other failure; the human `Error: ...` usage text stays on stderr."""
    emit_json({"ok": False, "error": "UsageError", "message": exc.format_message(), "exit_code": exc.exit_code})


def _report_error(message: str, hint: str, code: int, as_json: bool, payload: dict[str, Any]) -> None:
    line = f"error: {message}"
    if hint:
        line += f" (hint: {hint})"
    click.echo(line, err=True)
    if as_json:
        emit_json({"ok": False, **payload})


def parse_shape_spec(spec: str) -> tuple[str, tuple[int | str, ...], str]:
    """`NAME:1x3x224x224[:float32]` (dims may be symbolic names) -> (name, shape, dtype)."""
    from ..errors import ConfigError

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"--input {spec!r}: expected NAME:SHAPE[:DTYPE], e.g. input:1x3x224x224:float32")
    name, shape_s = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    dims: list[int | str] = []
    for d in shape_s.replace(",", "x").split("x"):
        d = d.strip()
        if d.isdigit() and int(d) > 0:
            dims.append(int(d))
        elif d.isidentifier():
            dims.append(d)
        else:
            raise ConfigError(f"--input {spec!r}: bad dimension {d!r}; expected positive integers or names "
                              "separated by 'x', e.g. 1x3x224x224 or batchx128")
    import numpy as np

    try:
        np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"--input {spec!r}: unknown dtype {dtype!r}; e.g. float32, int64") from None
    return name, tuple(dims), dtype


def kv_table(title: str):
    """A two-column rich table (bold key, value) without a header: the shape of every command's summary."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    return t
