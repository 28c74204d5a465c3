"""SIGKILL a real `edgecompress convert` inside stages and at a stage boundary, rerun each time: it resumes
from the killed stage and the final release is byte-identical to an uninterrupted run's.

8 subprocesses that import torch: ~35 s on the 2-core machine at load 4, 2.5-4.5 min at load 12."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"

# every stage but bench (a latency measurement cannot repeat; see docs/convert.md), all small
RECIPE = f"""
[model]
source = "{ROOT / 'examples/zoo.py'}:concat_net"
[data]
train = "{DATA / 'mnist_train.npz'}"
val = "{DATA / 'mnist_val.npz'}"
calibration = "{DATA / 'mnist_calibration.npz'}"
eval = "{DATA / 'mnist_eval.npz'}"
[train]
epochs = 1
max_samples = 600
batch_size = 32
lr = 0.01
[distill]
student = "{ROOT / 'examples/zoo.py'}:mlp"
epochs = 1
alpha = 0.5   # the student this test was written for (prune must fit its budget); not about KD
max_samples = 600
amp = false
[export]
inputs = ["input:1x1x28x28"]
exporter = "torchscript"
[prune]
ratio = 0.25
samples = 32
[quantize]
mode = "static"
method = "minmax"
format = "qdq"
activation_type = "uint8"
allow_slower = true
[package]
name = "resume-test"
measure_latency = false
eval_samples = 100
"""


class Run:
    """`edgecompress convert` in a subprocess, its stderr collected line by line."""

    def __init__(self, recipe: Path, out: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecompress", "convert", str(recipe), "--out", str(out)],
                                     cwd=recipe.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def kill_when(self, cond: Callable[[], bool], timeout: float = 240) -> bool:
        """SIGKILL as soon as `cond()` holds; False if the process ended first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(30)
                self._reader.join(10)
                return True
            if self.proc.poll() is not None:
                self._reader.join(10)
                return False
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"timed out; stderr:\n{self.text}")

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        return rc


def building(run: Run, out: Path, stage_dir: str, content: bool = False) -> Callable[[], bool]:
    """True once this run builds stage `stage_dir` (e.g. '3-export'): it said so, and the stage's temp folder
    exists (and has content)."""
    n, stage = stage_dir.split("-")

    def cond() -> bool:
        root = out / "stages"
        return f"[{n}/6] {stage}: running" in run.text and root.is_dir() and any(
            p.name.startswith(f".{stage_dir}.") and p.name.endswith(".tmp") and (not content or any(p.iterdir()))
            for p in root.iterdir())
    return cond


def printed(run: Run, needle: str) -> Callable[[], bool]:
    return lambda: needle in run.text


def release_bytes(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "release").rglob("*") if p.is_file()}
    files.update({p.name: p.read_bytes() for p in out.glob("*.tar.gz")})
    return files


def test_sigkill_anywhere_then_rerun_gives_the_same_release(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)

    out = tmp_path / "b"
    # 1. inside [train] (nothing completed yet)
    r = Run(recipe, out)
    assert r.kill_when(building(r, out, "1-train")), r.text
    assert not (out / "stages" / "1-train").exists()

    # 2. rerun: resumes at train; killed inside [distill] once it has written its first epoch's state
    r = Run(recipe, out)
    assert r.kill_when(building(r, out, "2-distill", content=True)), r.text
    assert "[1/6] train: running" in r.text and (out / "stages" / "1-train" / "stage.json").is_file()

    # 3. rerun: train reused; killed inside [export]
    r = Run(recipe, out)
    assert r.kill_when(building(r, out, "3-export")), r.text
    assert "[1/6] train: up to date" in r.text and "[2/6] distill: running" in r.text

    # 4. rerun: killed at the boundary right after [prune] completed
    r = Run(recipe, out)
    assert r.kill_when(printed(r, "[4/6] prune: done")), r.text
    assert "[2/6] distill: up to date" in r.text and "[3/6] export: running" in r.text

    # 5. rerun: killed inside [quantize]
    r = Run(recipe, out)
    assert r.kill_when(building(r, out, "5-quantize")), r.text
    assert "[4/6] prune: up to date" in r.text

    # 6. rerun: killed inside [package]
    r = Run(recipe, out)
    assert r.kill_when(building(r, out, "6-package")), r.text
    assert "[5/6] quantize: running" in r.text

    # 7. rerun to the end: only package runs, and the release is the uninterrupted run's, byte for byte
    r = Run(recipe, out)
    assert r.finish() == 0, r.text
    for stage in ("train", "distill", "export", "prune", "quantize"):
        assert f"] {stage}: up to date" in r.text, r.text
    assert "[6/6] package: running" in r.text
    assert not [p.name for p in (out / "stages").iterdir() if p.name.startswith(".")]  # leftovers removed
    got = release_bytes(out)

    # the uninterrupted reference run, in another folder
    ref = Run(recipe, tmp_path / "a")
    assert ref.finish() == 0, ref.text
    expected = release_bytes(tmp_path / "a")
    assert "release/manifest.json" in expected and "resume-test-0.1.0.tar.gz" in expected, sorted(expected)
    assert sorted(got) == sorted(expected)
    assert [k for k in expected if got[k] != expected[k]] == []
