"""Orchestration: run a Recipe's stages in order, each cached under DIR/stages/<n>-<stage>/ by content hash.

A stage whose key matches a completed folder is skipped (resume after an interruption; a change to a late stage
reruns only from there). `from_stage` forces a rerun from that stage on. A BudgetError stops the pipeline and
keeps every completed stage. Progress goes to stderr, one line per stage with its elapsed time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import config_to_dict
from ..errors import BudgetError, ConfigError, EdgecompressError, OutputError
from ..fsutil import check_output_dir
from .cache import StageDir, clean_leftovers, remove_stale, stage_key
from .recipe import Recipe
from .registry import STAGE_NAMES
from .steps import STEPS, State, StepOutput
from .summary import summarize

Progress = Callable[[str], None]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (bench runs models in subprocesses)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class StageRecord:
    index: int
    stage: str
    key: str
    status: str  # "ran" | "cached" | "failed"
    seconds: float
    dir: str
    record: dict[str, Any] = field(default_factory=dict)
    cpu: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "stage": self.stage, "status": self.status, "seconds": round(self.seconds, 2),
                "cpu_seconds": round(self.cpu, 2),
                "dir": self.dir, "key": self.key, "artifact": self.record.get("artifact"),
                "metrics": self.record.get("metrics", {})}


@dataclass
class ConvertResult:
    out: Path
    release: Path | None
    tarball: Path | None
    stages: list[StageRecord]
    summary: list[dict[str, Any]]
    verify: dict[str, Any] | None
    seconds: float
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "out": str(self.out), "release": str(self.release) if self.release else None,
                "tarball": str(self.tarball) if self.tarball else None, "target": self.target,
                "seconds": round(self.seconds, 2), "stages": [s.to_dict() for s in self.stages],
                "summary": self.summary, "verify": self.verify}


def plan(recipe: Recipe) -> list[tuple[int, str, Any]]:
    """(n, stage, config) in pipeline order, numbered from 1."""
    return [(i + 1, name, cfg) for i, (name, cfg) in enumerate(recipe.stages)]


def check_from(recipe: Recipe, from_stage: str | None) -> None:
    if from_stage is None:
        return
    if from_stage not in STAGE_NAMES:
        raise ConfigError(f"--from {from_stage!r}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
    if from_stage not in recipe.stage_names:
        raise ConfigError(f"--from {from_stage!r}: this recipe has no [{from_stage}] stage; it runs "
                          f"{', '.join(recipe.stage_names)}")


def run_recipe(recipe: Recipe, out: str | Path, *, from_stage: str | None = None,
               progress: Progress | None = None) -> ConvertResult:
    say = progress or (lambda _msg: None)
    out = check_output_dir(Path(out)).absolute()  # stages may chdir (quantize works in a private temp dir)
    steps = plan(recipe)
    check_from(recipe, from_stage)
    root = out / "stages"
    created = [p for p in (out, root) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        with _exclusive(out):
            return _run(recipe, out, root, steps, from_stage, say)
    except BaseException:
        _remove_if_unused(created, out)
        raise


def _remove_if_unused(created: list[Path], out: Path) -> None:
    """Folders this run created and left empty (no stage completed) go again, so a failed first run leaves
    nothing under the output name; completed stages are always kept for the resume."""
    for folder in reversed(created):  # stages/ first, then the output folder
        if folder == out and created and out.is_dir():
            with contextlib.suppress(OSError):
                if [p.name for p in out.iterdir()] == [".convert.lock"]:
                    (out / ".convert.lock").unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One convert per output folder at a time (the lock dies with its process, SIGKILL included)."""
    import fcntl

    with open(out / ".convert.lock", "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another edgecompress convert is running in {out}",
                              hint="wait for it, or use another --out") from None
        yield


def _run(recipe: Recipe, out: Path, root: Path, steps: list, from_stage: str | None, say: Progress) -> ConvertResult:
    for name in clean_leftovers(root):
        say(f"removed the leftover of an interrupted stage: {name}")
    remove_stale(root, {f"{i}-{n}" for i, n, _ in steps})
    state = State(recipe=recipe)
    records: list[StageRecord] = []
    forced = False
    t_all = time.perf_counter()
    total = len(steps)
    for index, name, cfg in steps:
        forced = forced or name == from_stage
        step = STEPS[name]
        cfg = step.wire(cfg, state)
        key = stage_key(name, config_to_dict(cfg), step.inputs(cfg, state))
        sd = StageDir(root, index, name)
        t0, c0 = time.perf_counter(), cpu_seconds()
        record = None if forced else sd.load(key)
        label = f"[{index}/{total}] {name}"
        if record is not None:
            status = "cached"
            say(f"{label}: up to date, reusing {sd.path} (ran in {record.get('seconds', 0):.1f}s)")
        else:
            say(f"{label}: running ...")
            try:
                def step_say(m: str, _l: str = label) -> None:
                    say(f"{_l}: {m}")

                with sd.build(key) as (tmp, rec):
                    result: StepOutput = step.run(cfg, state, tmp, step_say)
                    rec.update(result.to_record(config_to_dict(cfg), time.perf_counter() - t0))
            except BudgetError as exc:
                records.append(StageRecord(index, name, key, "failed", time.perf_counter() - t0, str(sd.path)))
                done = [r.stage for r in records if r.status != "failed"]
                raise BudgetError(f"budget not met at stage {index} ({name}): {exc.message}. The pipeline stopped; "
                                  f"completed stages ({', '.join(done) or 'none'}) are kept in {root} and are "
                                  f"reused by the next run", hint=exc.hint, report=exc.report) from None
            except EdgecompressError as exc:
                exc.message = f"stage {index} ({name}): {exc.message}"
                raise
            record = sd.load(key)
            if record is None:  # pragma: no cover - the folder was just completed
                raise EdgecompressError(f"stage {index} ({name}): its output folder {sd.path} is incomplete")
            status = "ran"
            say(f"{label}: done in {time.perf_counter() - t0:.1f}s (cpu {cpu_seconds() - c0:.1f}s)")
        state.apply(name, record, sd.path)
        records.append(StageRecord(index, name, key, status, time.perf_counter() - t0, str(sd.path), record,
                                   cpu_seconds() - c0))

    release, tarball, verify = publish(state, out, say)
    return ConvertResult(out=out, release=release, tarball=tarball, stages=records, summary=summarize(state),
                         verify=verify, seconds=time.perf_counter() - t_all, target=recipe.target.name)


def publish(state: State, out: Path, say: Progress) -> tuple[Path | None, Path | None, dict[str, Any] | None]:
    """Copy the package stage's release (+ tarball) to DIR/ and verify the copy."""
    from ..fsutil import atomic_copy, atomic_dir, atomic_write_text

    pkg = state.package
    if pkg is None:
        return None, None, None
    release = tarball = None
    if pkg.get("release"):
        release = out / "release"
        with atomic_dir(release) as tmp:
            shutil.copytree(pkg["release"], tmp, dirs_exist_ok=True)
    published = out / ".convert-published"  # the tarball name the last run published, replaced by this one
    with contextlib.suppress(OSError):
        old = published.read_text().strip()
        if old and old != f"{pkg['name']}.tar.gz" and "/" not in old:
            (out / old).unlink(missing_ok=True)
    if pkg.get("tarball"):
        tarball = out / f"{pkg['name']}.tar.gz"
        atomic_copy(pkg["tarball"], tarball)
        atomic_write_text(published, tarball.name + "\n")
    t0 = time.perf_counter()
    from ..errors import ValidationError
    from ..package import verify as verify_release

    target = release or tarball
    report = verify_release(str(target))
    rep = report.to_dict() if hasattr(report, "to_dict") else config_to_dict(report)
    if not getattr(report, "ok", False):
        raise ValidationError(f"the release {target} failed verification: {'; '.join(map(str, report.failures))}",
                              report=rep)
    say(f"verify: {target} ok ({time.perf_counter() - t0:.1f}s)")
    return release, tarball, rep


def describe_plan(recipe: Recipe, out: str | Path, *, from_stage: str | None = None) -> list[dict[str, Any]]:
    """What a run would do, without running anything: per stage, its settings and whether its completed folder
    under `out` would be reused ("cached"), it would run ("run"), or that depends on earlier stages ("pending")."""
    from .typed import changed_fields

    check_from(recipe, from_stage)
    root = Path(out) / "stages"
    state = State(recipe=recipe)
    rows = []
    known = True
    for index, name, cfg in plan(recipe):
        status = "pending"
        if name == from_stage:
            known = False
            status = "run (--from)"
        elif known:
            step = STEPS[name]
            wired = step.wire(cfg, state)
            record = StageDir(root, index, name).load(stage_key(name, config_to_dict(wired), step.inputs(wired, state)))
            if record is None:
                known = False
                status = "run"
            else:
                status = "cached"
                state.apply(name, record, StageDir(root, index, name).path)
        rows.append({"index": index, "stage": name, "dir": str(root / f"{index}-{name}"), "status": status,
                     "settings": config_to_dict(changed_fields(cfg))})
    return rows
