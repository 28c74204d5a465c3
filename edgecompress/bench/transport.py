"""Where the runner runs: a local subprocess, or this host under qemu-user (emulated arm64).

Every transport takes a staging folder (runner script, job JSON, models, feeds) and returns the runner's JSON;
files the runner wrote (outputs) are in the staging folder afterwards. SSH and adb live in ssh.py / adb.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, RemoteError, RuntimeFailure, TargetError
from .qemu import emulated_command, require_root

MARK = "@@EDGECOMPRESS@@"
RUNNER = Path(__file__).with_name("remote_runner.py")


def one_line(text: str, limit: int = 300) -> str:
    return " ".join((text or "").split())[-limit:]


def parse_runner_output(stdout: str, stderr: str, rc: int, where: str) -> dict[str, Any]:
    """The runner's JSON, or the matching EdgecompressError (one line naming the problem)."""
    payload = None
    for line in (stdout or "").splitlines():
        if line.startswith(MARK):
            try:
                payload = json.loads(line[len(MARK):])
            except ValueError:
                payload = None
    if payload is None:
        detail = one_line(stderr) or one_line(stdout) or f"exit status {rc}"
        raise RuntimeFailure(f"benchmark runner on {where} gave no result (exit {rc}): {detail}")
    if payload.get("ok"):
        return payload
    kind, msg = payload.get("error_kind", "runtime"), payload.get("message", "unknown error")
    if kind == "model_load":
        raise ModelError(f"{where}: {msg}")
    if kind == "ep_unavailable":
        raise TargetError(f"{where}: {msg}", hint="drop --strict to fall back to the CPU EP, or pick a target "
                                                   "whose execution providers this onnxruntime build has")
    if kind == "no_onnxruntime":
        raise RemoteError(f"{where}: {msg}", hint="install onnxruntime and numpy for that python "
                                                  "(pip install onnxruntime), or point --remote-python at one")
    raise RuntimeFailure(f"{where}: {msg}")


def stage_runner(staging: Path) -> None:
    shutil.copy2(RUNNER, staging / RUNNER.name)


def load_outputs(path: Path) -> tuple[list[str], list[list[np.ndarray]]]:
    """The outputs file the runner wrote (keys `<feed index>/<output name>`): output names in order, and per
    output its arrays in feed order."""
    by_name: dict[str, dict[int, np.ndarray]] = {}
    order: list[str] = []
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            idx, name = key.split("/", 1)
            if name not in by_name:
                by_name[name] = {}
                order.append(name)
            by_name[name][int(idx)] = z[key]
    return order, [[by_name[n][k] for k in sorted(by_name[n])] for n in order]


class LocalTransport:
    """The runner in a fresh subprocess of this python (its peak RSS is the model's own plus the runtime)."""

    where = "local"

    def __init__(self, timeout_s: float = 900.0, python: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.python = python or sys.executable

    def command(self, staging: Path, job: str) -> list[str]:
        return [self.python, str(staging / RUNNER.name), str(staging / job)]

    def run(self, staging: Path, job: str, fetch: tuple[str, ...] = ()) -> dict[str, Any]:
        cmd = self.command(staging, job)
        try:
            proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"benchmark on {self.where} timed out after {self.timeout_s:.0f} s",
                                 hint="use fewer --runs or a shorter --duration") from None
        return parse_runner_output(proc.stdout, proc.stderr, proc.returncode, self.where)

    def close(self) -> None:
        pass


class EmulatedTransport(LocalTransport):
    """The runner under qemu-aarch64 with the arm64 root's python3 and aarch64 onnxruntime wheel."""

    where = "emulated-arm64"

    def __init__(self, timeout_s: float = 1800.0) -> None:
        super().__init__(timeout_s)
        self.root, _ = require_root()

    def command(self, staging: Path, job: str) -> list[str]:
        return emulated_command(self.root, staging / RUNNER.name, staging / job)
