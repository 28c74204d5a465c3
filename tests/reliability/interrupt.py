"""Interruption: SIGKILL `convert` at seeded random moments, check what is left, rerun, compare release bytes.

5 chains x 4 kills = 20 seeded kill moments; each restart after a kill resumes from the cache (a rerun after a
kill), and each chain ends with a run to completion whose release must match an uninterrupted run byte for byte.

After each kill, every file under a final (non-temp) name in the output folder must be whole: .onnx files load
and pass the checker, .json files parse, .npz files load, a release folder or tarball verifies. Then a rerun must
complete and produce the same release bytes as an uninterrupted run, and leave no temp litter behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fixtures import World
from .harness import cli_cmd, cli_env

# pinned choices and an arm64 target (never host-compatible on x86): no timing-based selection, no latency measurement (so the release bytes
# are reproducible and a run takes seconds)
FAST_RECIPE = """\
target = "rpi5-cortex-a76"

[model]
source = "{model}"

[data]
calibration = "{calib}"
eval = "{eval}"

[quantize]
mode = "static"
method = "minmax"
format = "qdq"
activation_type = "uint8"
allow_slower = true
max_drop = 0.5

[package]
name = "tiny"
version = "1.0.0"
measure_latency = false
"""


def write_recipe(world: World, dest: Path) -> Path:
    dest.write_text(FAST_RECIPE.format(model=world.model, calib=world.calib, eval=world.eval))
    return dest


def run_convert(recipe: Path, out: Path, cwd: Path, tmp: Path, *, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(["convert", str(recipe), "--out", str(out)]), cwd=cwd, env=cli_env(tmp),
                          capture_output=True, text=True, timeout=timeout)


def release_bytes(out: Path) -> dict[str, bytes]:
    """Every file of the release folder and the tarball(s) under `out` (paths relative to out)."""
    files = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if rel.startswith("stages/") or not p.is_file() or _is_lock(rel):
            continue
        files[rel] = p.read_bytes()
    return files


def _is_lock(rel: str) -> bool:
    """convert's own bookkeeping in OUT stays by design: `.convert.lock` (deleting a flock'd file would race) and
    `.convert-published` (the tarball name the last run published)."""
    return "/" not in rel and rel in (".convert.lock", ".convert-published")


def _is_temp(rel: str) -> bool:
    if _is_lock(rel):
        return False
    return any(part.startswith(".") or part.endswith((".tmp", ".old", ".partial")) for part in rel.split("/"))


def corrupt_files(out: Path) -> list[str]:
    """Files under final names that are not whole, and release folders/tarballs that do not verify."""
    import onnx

    from edgecompress.errors import EdgecompressError
    from edgecompress.package import verify

    bad = []
    if not out.exists():
        return bad
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if _is_temp(rel) or not p.is_file():
            continue
        try:
            if p.suffix == ".onnx":
                onnx.checker.check_model(onnx.load(str(p)))
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".npz":
                with np.load(p, allow_pickle=False) as z:
                    for k in z.files:
                        z[k]
        except (Exception, zipfile.BadZipFile) as exc:  # noqa: BLE001 - any failure means a torn file
            bad.append(f"{rel}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
    for p in [out / "release", *sorted(out.glob("*.tar.gz"))]:
        if p.exists():
            try:
                rep = verify(p)
                if not rep.ok:
                    bad.append(f"{p.name} does not verify: {list(rep.failures)[:3]}")
            except EdgecompressError as exc:
                bad.append(f"{p.name} does not verify: {exc}")
    return bad


def temp_litter(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if _is_temp(p.relative_to(out).as_posix()))


@dataclass
class Reference:
    seconds: float
    release: dict[str, bytes]


def reference_run(world: World, base: Path) -> Reference:
    """An uninterrupted run at the path every trial reuses (paths may appear in the manifest)."""
    recipe = write_recipe(world, world.inputs.parent / "interrupt_recipe.toml")
    out, cwd, tmp = base / "out", base / "cwd", base / "tmp"
    for d in (cwd, tmp):
        d.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = run_convert(recipe, out, cwd, tmp)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"uninterrupted convert failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    ref = Reference(seconds, release_bytes(out))
    shutil.rmtree(out)
    return ref


@dataclass
class Chain:
    """Kill convert `len(delays)` times in a row (each restart resumes from what the last run left), then run it
    to completion: every kill is a random moment of some stage, every restart is a rerun after a kill."""

    seed: int
    delays: list[float]
    kills: int = 0
    problems: list[str] = field(default_factory=list)


def kill_delays(seed: int, kills: int, seconds: float) -> list[float]:
    """Kill moments spread over a whole run (python start-up included), slightly past its usual length."""
    rng = np.random.default_rng(seed)
    return [float(rng.uniform(0.3, seconds * 1.05)) for _ in range(kills)]


def chain(world: World, base: Path, ref: Reference, seed: int, kills: int = 4) -> Chain:
    c = Chain(seed, kill_delays(seed, kills, ref.seconds))
    recipe = world.inputs.parent / "interrupt_recipe.toml"
    out, cwd, tmp = base / "out", base / "cwd", base / "tmp"
    shutil.rmtree(out, ignore_errors=True)
    for delay in c.delays:
        proc = subprocess.Popen(cli_cmd(["convert", str(recipe), "--out", str(out)]), cwd=cwd, env=cli_env(tmp),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            c.kills += 1
        c.problems += [f"after a kill at {delay:.2f}s: {p}" for p in corrupt_files(out)]
    rerun = run_convert(recipe, out, cwd, tmp)
    if rerun.returncode != 0:
        c.problems.append(f"rerun failed (exit {rerun.returncode}): {rerun.stderr.strip().splitlines()[-1:]}")
        return c
    got = release_bytes(out)
    if set(got) != set(ref.release):
        c.problems.append(f"rerun release files differ: extra {sorted(set(got) - set(ref.release))}, "
                          f"missing {sorted(set(ref.release) - set(got))}")
    changed = sorted(k for k in set(got) & set(ref.release) if got[k] != ref.release[k])
    if changed:
        c.problems.append(f"rerun release bytes differ from an uninterrupted run: {changed[:6]}")
    litter = temp_litter(out)
    if litter:
        c.problems.append(f"temp litter left after the rerun completed: {litter[:5]}")
    if any(cwd.iterdir()):
        c.problems.append(f"files left in the cwd: {sorted(p.name for p in cwd.iterdir())}")
    return c


CHAINS, KILLS_PER_CHAIN, SEED = 5, 4, 2024


def sweep(world: World) -> tuple[int, int]:
    """(kill moments tried, kill moments whose chain ended clean) for the summary script."""
    base = world.root / "interrupt"
    ref = reference_run(world, base)
    chains = [chain(world, base, ref, SEED + i, KILLS_PER_CHAIN) for i in range(CHAINS)]
    return CHAINS * KILLS_PER_CHAIN, sum(KILLS_PER_CHAIN for c in chains if not c.problems)
