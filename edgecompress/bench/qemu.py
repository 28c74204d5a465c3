"""qemu-user primitives of the arm64 emulation: where the prepared root lives, its ready marker, the qemu binary,
and the argv that runs the bench runner inside it. Building the root is emulation.py's; the transports (transport.py)
and the results (report.py) need only this.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import UnsupportedError

EMULATION_NOTE = ("emulated arm64 under qemu-user on this host: timings are 100-300x slower than a device "
                  "and are NOT device speed; use them only for output parity")
READY = ".edgecompress-ready.json"


def emulation_root() -> Path:
    """Where the arm64 root lives: $EDGECOMPRESS_ARM64_ROOT, else <cache>/edgecompress/arm64-root."""
    env = os.environ.get("EDGECOMPRESS_ARM64_ROOT")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgecompress" / "arm64-root"


def qemu_binary() -> str | None:
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        p = shutil.which(name)
        if p:
            return p
    return None


def require_qemu() -> str:
    """The qemu-aarch64 binary, or UnsupportedError when qemu-user is not installed."""
    qemu = qemu_binary()
    if qemu is None:
        raise UnsupportedError("qemu-aarch64-static not found", hint="apt-get install qemu-user-static")
    return qemu


def root_info(root: Path | None = None) -> dict | None:
    """The ready marker of a prepared root (python version, onnxruntime version), or None."""
    root = root or emulation_root()
    try:
        return json.loads((root / READY).read_text())
    except (OSError, ValueError):
        return None


def require_root(root: Path | None = None) -> tuple[Path, dict]:
    root = root or emulation_root()
    info = root_info(root)
    if info is None:
        raise UnsupportedError(f"no arm64 emulation root at {root}",
                               hint="run `edgecompress bench --setup-emulation` once (needs root, network, "
                                    "qemu-user-static and debootstrap)")
    require_qemu()
    return root, info


def emulated_command(root: Path, runner: Path, job: Path) -> list[str]:
    """argv that runs the runner with the root's aarch64 python3 under qemu-user."""
    return [require_qemu(), "-L", str(root), str(root / "usr/bin/python3"), str(runner), str(job)]
