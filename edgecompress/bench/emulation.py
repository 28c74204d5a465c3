"""arm64 emulation: an arm64 Debian root with python3 + numpy + the aarch64 onnxruntime wheel, run under qemu-user.

`setup_emulation()` builds the root once (debootstrap --foreign --arch=arm64 --variant=minbase downloads the
Debian arm64 packages of python3 + python3-numpy, which are unpacked with dpkg-deb: no binfmt_misc needed), then the aarch64 onnxruntime wheel from `pip download` unpacked into
the root's dist-packages). `emulated_command()` runs the self-contained runner inside it with
`qemu-aarch64-static -L ROOT` (no binfmt_misc and no privileges needed for running).

Emulated timings are 100-300x slower than a real device: they are labelled as such and never reported as
device speed. What emulation is good for is output parity: the aarch64 kernels (NEON, sdot) give the outputs
the device will give.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import RuntimeFailure, UnsupportedError
from ..fsutil import private_tempdir
from .qemu import (
    EMULATION_NOTE,
    READY,
    emulated_command,
    emulation_root,
    qemu_binary,
    require_qemu,
    require_root,
    root_info,
)
from .transport import EmulatedTransport, load_outputs, stage_runner

# the qemu-user primitives live in qemu.py (the transports import them); they are part of this module's API
__all__ = ["DEFAULT_MIRROR", "DEFAULT_SUITE", "EMULATION_NOTE", "READY", "FAKE_CPUS", "FAKE_FEATURES",
           "emulated_command", "emulated_outputs", "emulation_root", "qemu_binary", "require_qemu", "require_root",
           "root_info", "setup_emulation"]

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def _run(cmd: list[str], log: Callable[[str], None], timeout: float, what: str, env: dict | None = None) -> str:
    log(f"$ {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"emulation setup: {what} timed out after {timeout:.0f} s") from None
    except FileNotFoundError as exc:
        raise UnsupportedError(f"emulation setup: {exc.filename} not found",
                               hint="apt-get install debootstrap qemu-user-static") from None
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).split()[-40:])
        raise RuntimeFailure(f"emulation setup: {what} failed (exit {proc.returncode}): {tail[:400]}")
    return proc.stdout


def setup_emulation(*, root: Path | None = None, suite: str = DEFAULT_SUITE, mirror: str = DEFAULT_MIRROR,
                    force: bool = False, ort_version: str | None = None,
                    log: Callable[[str], None] = lambda s: None) -> dict:
    """Prepare the arm64 root once (cached). Returns the ready marker with the time the setup took."""
    root = root or emulation_root()
    cached = None if force else root_info(root)
    if cached is not None:
        info = dict(cached)
        info["cached"] = True
        return info
    if os.geteuid() != 0:
        raise UnsupportedError("--setup-emulation needs root (debootstrap creates device nodes)",
                               hint="run it once as root, or under sudo; EDGECOMPRESS_ARM64_ROOT chooses where")
    qemu = qemu_binary()
    if qemu is None or shutil.which("debootstrap") is None:
        raise UnsupportedError("--setup-emulation needs qemu-user-static and debootstrap",
                               hint="apt-get install qemu-user-static debootstrap")
    t0 = time.monotonic()
    root.parent.mkdir(parents=True, exist_ok=True)
    work = root.with_name(f"{root.name}.partial-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    try:
        info = _build(work, suite, mirror, qemu, ort_version, env, log, t0)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    info["root"] = str(root)
    (work / READY).write_text(json.dumps(info, indent=2))
    if root.exists():
        shutil.rmtree(root)
    os.replace(work, root)
    info["cached"] = False
    return info


def _build(work: Path, suite: str, mirror: str, qemu: str, ort_version: str | None, env: dict,
           log: Callable[[str], None], t0: float) -> dict:
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3-minimal,python3-numpy",
          suite, str(work), mirror], log, 1200, "debootstrap (first stage)", env)
    # The second stage (maintainer scripts) needs binfmt_misc, which containers often lack; python and numpy only
    # need their files, so every downloaded package is unpacked with the host's dpkg-deb instead.
    debs = sorted((work / "var/cache/apt/archives").glob("*.deb"))
    if not debs:
        raise RuntimeFailure("emulation setup: debootstrap downloaded no packages")
    for deb in debs:
        unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "--keep-directory-symlink", "--no-same-owner", "-C", str(work)],
                             stdin=unpack.stdout, capture_output=True, timeout=300)
        unpack.stdout.close()  # type: ignore[union-attr]
        if unpack.wait(timeout=300) != 0 or tar.returncode != 0:
            raise RuntimeFailure(f"emulation setup: cannot unpack {deb.name}: {tar.stderr.decode()[-300:]}")
        deb.unlink()
    _alternatives(work)
    _fake_cpu(work)
    t_root = time.monotonic() - t0
    probe = _run([qemu, "-L", str(work), str(work / "usr/bin/python3"), "-c",
                  "import sys, numpy; print('%d.%d' % sys.version_info[:2], numpy.__version__)"],
                 log, 300, "probing the arm64 python", env)
    py_ver, np_ver = probe.split()[:2]
    wheel_dir = work / "tmp" / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    spec = f"onnxruntime=={ort_version}" if ort_version else "onnxruntime"
    _run([sys.executable, "-m", "pip", "download", spec, "--no-deps", "--platform", "manylinux_2_28_aarch64",
          "--only-binary=:all:", "--python-version", py_ver, "-d", str(wheel_dir), "-q"],
         log, 600, "pip download of the aarch64 onnxruntime wheel", env)
    wheels = sorted(wheel_dir.glob("onnxruntime-*.whl"))
    if not wheels:
        raise RuntimeFailure("emulation setup: pip download gave no onnxruntime wheel")
    site = work / "usr/lib/python3/dist-packages"
    with zipfile.ZipFile(wheels[-1]) as zf:
        zf.extractall(site)
    shutil.rmtree(wheel_dir)
    probe = _run([qemu, "-L", str(work), str(work / "usr/bin/python3"), "-c",
                  "import onnxruntime as o; "
                  "print(o.__version__)"], log, 600, "importing onnxruntime under qemu", env)
    return {"suite": suite, "python": py_ver, "numpy": np_ver,
            "onnxruntime": probe.strip().splitlines()[-1], "wheel": wheels[-1].name,
            "debootstrap_s": round(t_root, 1), "setup_s": round(time.monotonic() - t0, 1),
            "cpu": f"{FAKE_CPUS}x Cortex-A76-like ({FAKE_FEATURES})"}


def _alternatives(root: Path) -> None:
    """What update-alternatives would have linked: libblas.so.3 / liblapack.so.3 (numpy needs them)."""
    libdir = root / "usr/lib/aarch64-linux-gnu"
    for sub in ("blas", "lapack"):
        for lib in sorted((libdir / sub).glob("lib*.so.3")):
            link = libdir / lib.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(f"{sub}/{lib.name}")


FAKE_CPUS = 2
# A Cortex-A76-like core (NEON + dot product), as on a Raspberry Pi 5 or a recent phone; qemu's default `max`
# CPU implements all of these, so ORT's MLAS picks the same sdot int8 kernels it picks on such a device.
FAKE_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def _fake_cpu(root: Path) -> None:
    """An arm64 /proc/cpuinfo and sysfs cpu lists inside the root.

    Under `qemu -L ROOT`, files present in ROOT shadow the host's, so onnxruntime's cpuinfo library reads an
    arm64 description instead of the host's x86 one (with the x86 one it crashes while importing).
    """
    proc = root / "proc"
    if proc.is_symlink() or proc.is_file():
        proc.unlink()
    proc.mkdir(exist_ok=True)
    block = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: " + FAKE_FEATURES + "\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n")
    (proc / "cpuinfo").write_text("".join(block.format(i=i) for i in range(FAKE_CPUS)))
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name, value in (("possible", f"0-{FAKE_CPUS - 1}"), ("present", f"0-{FAKE_CPUS - 1}"),
                        ("online", f"0-{FAKE_CPUS - 1}"), ("kernel_max", "255")):
        (cpu / name).write_text(value + "\n")


def emulated_outputs(model_path: str | os.PathLike[str], feeds: list[dict], *, threads: int = 1,
                     graph_optimization: str = "all", timeout_s: float = 1800.0) -> list[dict]:
    """Run `model_path` on every feed under qemu-user (the aarch64 onnxruntime wheel, CPU EP) with the bench
    runner and read its outputs back: one dict output name -> array per feed, in the model's output order."""
    transport = EmulatedTransport(timeout_s)  # UnsupportedError when the root or qemu is missing
    with private_tempdir("edgecompress-emu-") as staging:
        stage_runner(staging)
        os.symlink(Path(model_path).resolve(), staging / "model.onnx")
        arrays = {f"{k}/{name}": np.asarray(v) for k, feed in enumerate(feeds) for name, v in feed.items()}
        np.savez(staging / "feeds.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds vs allow_pickle
        job = {"mode": "single", "models": ["model.onnx"], "threads": threads, "providers": ["CPUExecutionProvider"],
               "graph_optimization": graph_optimization, "warmup": 0, "runs": 0, "feeds": "feeds.npz",
               "outputs": "outputs.npz", "coverage": False, "emulated": True}
        (staging / "job.json").write_text(json.dumps(job))
        transport.run(staging, "job.json")
        names, per_output = load_outputs(staging / "outputs.npz")
    return [{n: per_output[i][k] for i, n in enumerate(names)} for k in range(len(feeds))]
