"""The corpus x commands matrix: which (command, case) pairs apply, and running one pair with every check."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .commands import COMMANDS, Command, good_values
from .corpus import CASES, Case, Unavailable
from .fixtures import World
from .harness import (
    Outcome,
    RunDirs,
    check_clean_any,
    check_clean_failure,
    diff_snapshots,
    run_inprocess,
    run_subprocess,
    snapshot,
)


def applicable(command: Command, case: Case) -> bool:
    if case.slot not in command.slots:
        return False
    if case.slot == "out" and command.out_kind not in case.kinds:
        return False
    return True


def pairs() -> list[tuple[str, str]]:
    """Every (command, case) pair that applies, in a stable order."""
    return [(c.name, k.name) for c, k in itertools.product(COMMANDS.values(), CASES) if applicable(c, k)]


@dataclass
class Result:
    command: str
    case: str
    outcome: Outcome | None
    problems: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.skipped

    def report(self) -> str:
        lines = [f"{self.command} x {self.case}: " + ("skipped: " + self.skipped if self.skipped else
                                                       ("ok" if self.ok else "FAILED"))]
        lines += [f"  - {p}" for p in self.problems]
        if self.outcome is not None and self.problems:
            lines.append("  " + self.outcome.describe().replace("\n", "\n  "))
        return "\n".join(lines)


_COUNTER = itertools.count()

# Process-wide caches that libraries (not edgecompress) keep in the system temp dir on purpose: torch's inductor
# cache and a 51-byte session stamp a torch native library drops as $TMPDIR/.ses. They are not stage temp work.
LIBRARY_CACHES = ("torchinductor_", ".ses")


def _filesystem_problems(before: dict[str, str], after: dict[str, str], tmp: Path) -> list[str]:
    out = []
    for change in diff_snapshots(before, after):
        path = Path(change.split(": ", 1)[1])
        try:
            rel = path.relative_to(tmp)
        except ValueError:
            rel = None
        if rel is not None and rel.parts and rel.parts[0].startswith(LIBRARY_CACHES):
            continue
        out.append(change)
    return out


def run_pair(world: World, command_name: str, case_name: str, *, base: Path | None = None,
             force_subprocess: bool = False, as_json: bool = False) -> Result:
    command = COMMANDS[command_name]
    case = next(c for c in CASES if c.name == case_name)
    base = base or world.root / "runs" / f"{next(_COUNTER):04d}-{command_name}-{case_name}"
    rd = RunDirs(base)
    try:
        values = good_values(world, rd, command)
        try:
            values[case.slot] = case.build(world, rd, command.out_kind or "")
        except Unavailable as exc:
            return Result(command_name, case_name, None, skipped=str(exc))
        argv = command.argv(values) + (["--json"] if as_json else [])
        watched = (world.inputs, base)
        before = snapshot(*watched)
        if case.subprocess or force_subprocess:
            outcome = run_subprocess(argv, cwd=rd.cwd, tmp=rd.tmp, fsize_limit=case.fsize_limit)
        else:
            outcome = run_inprocess(argv, cwd=rd.cwd, tmp=rd.tmp)
        after = snapshot(*watched)
        expectation = case.expectation(command_name)
        problems = check_clean_failure(outcome) if expectation == "fail" else check_clean_any(outcome)
        changes = _filesystem_problems(before, after, rd.tmp)
        if outcome.rc == 0 and expectation == "any":
            # success is legitimate here: only the output itself may be new
            out = values.get("out", "")
            changes = [c for c in changes if not (out and c.split(": ", 1)[1].startswith(out))]
        problems += [f"filesystem: {c}" for c in changes]
        if as_json and outcome.rc != 0:
            problems += _json_problems(outcome.stdout)
        if case.marker and (rd.case / "MARKER").exists():
            problems.append("the pickle's code RAN (marker file created)")
        return Result(command_name, case_name, outcome, problems)
    finally:
        rd.close()
        shutil.rmtree(base, ignore_errors=True)


def _json_problems(stdout: str) -> list[str]:
    """With --json a failure is still exactly one JSON object on stdout, with ok: false and the error."""
    import json

    try:
        obj = json.loads(stdout)
    except ValueError:
        return [f"--json: stdout is not one JSON object: {stdout[:200]!r}"]
    if not isinstance(obj, dict) or obj.get("ok") is not False or not obj.get("error"):
        return [f"--json: expected {{'ok': false, 'error': ...}}, got {str(obj)[:200]}"]
    return []


def json_pairs() -> list[tuple[str, str]]:
    """One case per (command, slot): the --json variant of the corpus."""
    seen: set[tuple[str, str]] = set()
    out = []
    for command, case in pairs():
        slot = next(c.slot for c in CASES if c.name == case)
        if (command, slot) not in seen and command != "targets":
            seen.add((command, slot))
            out.append((command, case))
    return out


def run_control(world: World, command_name: str, *, base: Path | None = None) -> tuple[Outcome, list[str], dict]:
    """Run a command on the good inputs: it must succeed (proves the argv is right before judging failures)."""
    command = COMMANDS[command_name]
    base = base or world.root / "runs" / f"{next(_COUNTER):04d}-{command_name}-control"
    rd = RunDirs(base)
    values = good_values(world, rd, command)
    before = snapshot(world.inputs, rd.cwd, rd.tmp)
    outcome = run_inprocess(command.argv(values), cwd=rd.cwd, tmp=rd.tmp)
    problems = []
    if outcome.rc != 0 or outcome.exception:
        problems.append(f"control run failed: {outcome.describe()}")
    problems += [f"filesystem: {c}" for c in
                 _filesystem_problems(before, snapshot(world.inputs, rd.cwd, rd.tmp), rd.tmp)]
    return outcome, problems, values
