"""Run a command on a hostile case and check the promises of a clean failure.

A run happens in a fresh run folder:  run/cwd (the working directory, empty), run/tmp (TMPDIR / tempfile.tempdir),
run/out (where outputs go), run/case (the case's own files). Everything under the run folder and the shared
inputs is snapshotted (path -> sha256) before and after, so one comparison proves: no output under the output
name, no temp litter beside it, nothing new in the cwd, no temp dir left behind, inputs unchanged.

Commands run in-process through click's CliRunner (fast), or as a real subprocess (`python -m edgecompress`)
where signals or resource limits are involved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    exception: str = ""  # a traceback that escaped the CLI (in-process runs)

    @property
    def last_line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-6:])
        return f"exit {self.rc}; stderr tail:\n{tail}" + (f"\nescaped exception:\n{self.exception}" if self.exception else "")


def snapshot(*roots: Path) -> dict[str, str]:
    """path -> sha256 (or 'dir' / 'link') for every entry under the roots, without following links."""
    out: dict[str, str] = {}
    for root in roots:
        if not os.path.lexists(root):
            out[str(root)] = "absent"
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            out[dirpath] = "dir"
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    out[p] = "link:" + os.readlink(p)
                elif os.path.isfile(p):
                    try:
                        h = hashlib.sha256()
                        with open(p, "rb") as f:
                            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                                h.update(chunk)
                        out[p] = h.hexdigest()
                    except OSError as exc:  # unreadable: still record it
                        out[p] = f"unreadable:{exc.errno}"
    return out


def diff_snapshots(before: dict[str, str], after: dict[str, str]) -> list[str]:
    problems = []
    for p in sorted(set(after) - set(before)):
        problems.append(f"new entry: {p}")
    for p in sorted(set(before) - set(after)):
        problems.append(f"removed entry: {p}")
    for p in sorted(set(before) & set(after)):
        if before[p] != after[p]:
            problems.append(f"changed: {p}")
    return problems


def check_clean_failure(outcome: Outcome) -> list[str]:
    """The CLI half of the promise: exit 1/2, last stderr line `error: ...`, no traceback, not an internal error."""
    problems = []
    if outcome.rc not in (1, 2):
        problems.append(f"exit code {outcome.rc}, expected 1 or 2")
    if outcome.exception:
        problems.append("an exception escaped the command")
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        problems.append("a traceback was printed")
    last = outcome.last_line
    # `error: ...` from handle_errors; click's own usage errors (`Error: Invalid value for 'MODEL' ...`, exit 2)
    # are one line naming the problem too
    if not last.lower().startswith("error:"):
        problems.append(f"last stderr line does not start with 'error:': {last[:200]!r}")
    if "internal error" in last:
        problems.append("the failure surfaced as an internal error (an unexpected exception in the stage)")
    return problems


def check_clean_any(outcome: Outcome) -> list[str]:
    """For cases where success is legitimate: success, or a clean failure; never a traceback."""
    if outcome.rc == 0 and not outcome.exception and "Traceback" not in outcome.stderr:
        return []
    return check_clean_failure(outcome)


@contextlib.contextmanager
def _tempdir_as(path: Path):
    old_tempdir, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(path)
    os.environ["TMPDIR"] = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


def run_inprocess(argv: Sequence[str], *, cwd: Path, tmp: Path) -> Outcome:
    from click.testing import CliRunner

    from edgecompress.cli import cli

    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with _tempdir_as(tmp):
            res = runner.invoke(cli, list(argv), catch_exceptions=True)
    except Exception:  # noqa: BLE001
        # CliRunner's own stream isolation failed (a stage that rebinds logging handlers / fds can leave state
        # from an earlier in-process run): in-process results are not trustworthy, so run the real process.
        os.chdir(old)
        for leftover in list(tmp.iterdir()):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink()
        return run_subprocess(argv, cwd=cwd, tmp=tmp)
    finally:
        if os.getcwd() != old:
            os.chdir(old)
    exc = ""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        exc = "".join(traceback.format_exception(*res.exc_info))  # type: ignore[misc]
    return Outcome(res.exit_code if res.exit_code is not None else -1, res.stdout, res.stderr, exc)


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    return env


def cli_cmd(argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "edgecompress", *argv]


def run_subprocess(argv: Sequence[str], *, cwd: Path, tmp: Path, fsize_limit: int | None = None,
                   timeout: float = 300) -> Outcome:
    def preexec() -> None:
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    proc = subprocess.run(cli_cmd(argv), cwd=cwd, env=cli_env(tmp), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class RunDirs:
    base: Path
    cwd: Path = field(init=False)
    tmp: Path = field(init=False)
    out: Path = field(init=False)
    case: Path = field(init=False)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cwd, self.tmp, self.out, self.case = (self.base / n for n in ("cwd", "tmp", "out", "case"))
        for d in (self.cwd, self.tmp, self.out, self.case):
            d.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        while self.cleanups:
            with contextlib.suppress(Exception):
                self.cleanups.pop()()
