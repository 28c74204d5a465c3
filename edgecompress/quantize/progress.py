"""Progress bars (rich, on stderr) for calibration and evaluation; silent when stderr is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callback for a transient progress bar of `total` steps."""
    if not sys.stderr.isatty() or total <= 0:
        yield _no_progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            prog.advance(task, n)

        yield advance


def _no_progress(n: int = 1) -> None:
    return None
