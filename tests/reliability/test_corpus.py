"""Every command on every hostile case that applies: a clean failure and nothing lost (see harness.py)."""

from __future__ import annotations

import pytest

from .commands import COMMANDS
from .corpus import CASES, by_slot
from .findings import OPEN
from .matrix import json_pairs, pairs, run_control, run_pair


def _params():
    out = []
    for command, case in pairs():
        marks = []
        if (command, case) in OPEN:
            marks.append(pytest.mark.xfail(strict=True, reason=OPEN[(command, case)]))
        out.append(pytest.param(command, case, id=f"{command}-{case}", marks=marks))
    return out


def test_corpus_size():
    assert len(CASES) >= 40
    for slot in ("model", "data", "target", "weights", "factory", "recipe", "out", "release"):
        assert by_slot(slot), slot


@pytest.mark.parametrize("command", list(COMMANDS))
def test_control_run_succeeds(world, command):
    """The good inputs pass, so a failure in the corpus is caused by the case, not by the command line."""
    if command == "verify":
        from .tamper import build_release

        build_release(world)
    outcome, problems, _ = run_control(world, command)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("command", "case"), _params())
def test_hostile_case(world, command, case):
    result = run_pair(world, command, case)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.ok, result.report()


@pytest.mark.parametrize(("command", "case"), [
    pytest.param(c, k, id=f"{c}-{k}", marks=[pytest.mark.xfail(strict=True, reason=OPEN[(c, k)])]
                 if (c, k) in OPEN else []) for c, k in json_pairs()])
def test_hostile_case_json(world, command, case):
    """--json on a failure: still exactly one JSON object on stdout ({"ok": false, "error": ...})."""
    result = run_pair(world, command, case, as_json=True)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.ok, result.report()


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_every_case_builds(world, tmp_path, case):
    """Each case builds on its own (or says why this machine cannot build it)."""
    from .corpus import Unavailable
    from .harness import RunDirs

    c = next(k for k in CASES if k.name == case)
    rd = RunDirs(tmp_path / "run")
    try:
        kinds = list(c.kinds) if c.slot == "out" else [""]
        for kind in kinds:
            sub = RunDirs(tmp_path / f"run-{kind or 'x'}")
            try:
                value = c.build(world, sub, kind)
                assert isinstance(value, str) and value
            except Unavailable:
                pass
            finally:
                sub.close()
    finally:
        rd.close()
