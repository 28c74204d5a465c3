"""Tampering: seeded random byte flips across a release's files and its tarball; `verify` must accept none.

`build_release(world)` packages the tiny model once (in-process CLI, latency not measured so the release is
reproducible). `flips(n, seed)` draws (target, file, offset, xor) cases: uniformly over every byte of every
release file and of the tarball, plus the tarball's structural bytes on purpose (gzip header fields, the gzip
CRC/size trailer, tar header and end-of-archive blocks), where a reader that stops early would miss the change.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fixtures import World
from .harness import RunDirs, run_inprocess


def build_release(world: World) -> Path:
    """Package the good model into world.root/release_src/release (+ release.tar.gz); cached in world.extra."""
    if "release" in world.extra:
        return world.extra["release"]
    rd = RunDirs(world.root / "release_src")
    out = rd.out / "release"
    outcome = run_inprocess(["package", str(world.model), "--out", str(out), "--eval", str(world.eval),
                             "--calibration", str(world.calib), "--no-measure-latency", "--name", "tiny",
                             "--version", "1.0.0"], cwd=rd.cwd, tmp=rd.tmp)
    if outcome.rc != 0:
        raise RuntimeError(f"package failed on the good model: {outcome.describe()}")
    tarball = out.with_name("release.tar.gz")
    if not tarball.is_file():
        raise RuntimeError(f"package wrote no tarball beside {out}: {sorted(p.name for p in rd.out.iterdir())}")
    world.extra["release"] = out
    world.extra["tarball"] = tarball
    return out


@dataclass(frozen=True)
class Flip:
    target: str  # "dir" (a file inside the release folder) or "tar" (the tarball)
    rel: str  # file inside the folder ('' for the tarball)
    offset: int
    xor: int
    region: str = "random"

    @property
    def id(self) -> str:
        where = self.rel if self.target == "dir" else "release.tar.gz"
        return f"{self.region}:{where}@{self.offset}^{self.xor:#04x}"


def _structural_offsets(tar: bytes) -> list[tuple[str, int]]:
    """The gzip layer's own bytes. Flips inside the uncompressed tar are `tar_level_flips` (re-gzipped)."""
    out = [("gzip-header", i) for i in range(10)]  # magic, method, flags, mtime(4), xfl, os
    out += [("gzip-trailer", len(tar) - 8 + i) for i in range(8)]  # CRC32, ISIZE
    out += [("gzip-last-deflate-byte", len(tar) - 9)]
    return out


def flips(world: World, n: int, seed: int) -> list[Flip]:
    release = build_release(world)
    tarball: Path = world.extra["tarball"]
    files = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    sizes = {rel: (release / rel).stat().st_size for rel in files}
    tar_size = tarball.stat().st_size
    rng = np.random.default_rng(seed)
    out: list[Flip] = []
    for _ in range(n):
        xor = int(rng.integers(1, 256))
        # half of the cases in the folder (by file, uniform), half in the tarball (by byte, uniform)
        if rng.random() < 0.5:
            rel = files[int(rng.integers(0, len(files)))]
            if sizes[rel] == 0:
                continue
            out.append(Flip("dir", rel, int(rng.integers(0, sizes[rel])), xor))
        else:
            out.append(Flip("tar", "", int(rng.integers(0, tar_size)), xor))
    for region, off in _structural_offsets(tarball.read_bytes()):
        out.append(Flip("tar", "", off, int(rng.integers(1, 256)), region))
    return out


def tar_level_flips(world: World, n: int, seed: int) -> list[tuple[str, bytes]]:
    """Flips inside the *uncompressed* tar (headers, padding, end blocks), re-gzipped validly."""
    build_release(world)
    raw = bytearray(gzip.decompress(world.extra["tarball"].read_bytes()))
    rng = np.random.default_rng(seed)
    cases = []
    # the first header block, the end-of-archive blocks, the record padding, and random bytes
    picks = [("tar-first-header", int(rng.integers(0, 512)))]
    end = len(raw)
    picks += [("tar-tail", end - 1 - int(rng.integers(0, min(end, 10240)))) for _ in range(max(1, n // 3))]
    picks += [("tar-random", int(rng.integers(0, end))) for _ in range(n - len(picks))]
    for region, off in picks:
        data = bytearray(raw)
        data[off] ^= int(rng.integers(1, 256))
        cases.append((f"{region}@{off}", gzip.compress(bytes(data), mtime=0)))
    return cases


def apply(world: World, flip: Flip, dest: Path) -> Path:
    """Copy the release (or tarball) to `dest` with the flip applied; return the path to verify."""
    if flip.target == "dir":
        target = dest / "release"
        shutil.copytree(world.extra["release"], target)
        f = target / flip.rel
    else:
        target = dest / "release.tar.gz"
        shutil.copyfile(world.extra["tarball"], target)
        f = target
    data = bytearray(f.read_bytes())
    data[flip.offset] ^= flip.xor
    f.write_bytes(bytes(data))
    return target


def verify_outcome(path: Path) -> tuple[str, str]:
    """("accepted" | "rejected" | "crashed", detail) through the Python API.

    verify returns a report with failures, or raises an EdgecompressError; any other exception is a crash (the CLI
    would print `error: internal error: ...`).
    """
    from edgecompress.errors import EdgecompressError
    from edgecompress.package import verify

    try:
        report = verify(path)
    except EdgecompressError as exc:
        return "rejected", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - that is the finding
        return "crashed", f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return ("accepted" if report.ok else "rejected"), "; ".join(report.failures[:3])


def verify_accepts(path: Path) -> tuple[bool, str]:
    state, detail = verify_outcome(path)
    return state == "accepted", detail


def sweep(world: World, n: int = 200, seed: int = 1234) -> tuple[int, int]:
    """(cases tried, cases cleanly rejected) over the random + structural flips and the tar-level flips."""
    tried = rejected = 0
    base = world.root / "tamper"
    for i, flip in enumerate(flips(world, n, seed)):
        d = base / f"{i:04d}"
        d.mkdir(parents=True)
        state, _ = verify_outcome(apply(world, flip, d))
        shutil.rmtree(d, ignore_errors=True)
        tried += 1
        rejected += state == "rejected"
    for i, (_, blob) in enumerate(tar_level_flips(world, 24, seed)):
        d = base / f"t{i:04d}"
        d.mkdir(parents=True)
        (d / "release.tar.gz").write_bytes(blob)
        state, _ = verify_outcome(d / "release.tar.gz")
        shutil.rmtree(d, ignore_errors=True)
        tried += 1
        rejected += state == "rejected"
    return tried, rejected
