"""Deterministic release tarballs and safe extraction.

Writing: entries sorted by path under one top folder `<name>-<version>/`, mtime 0, uid/gid 0, empty owner
names, modes 0755 (folders) / 0644 (files), PAX-free USTAR/GNU headers, gzip header without name or timestamp.
Reading: every member is checked before anything is extracted: no absolute paths, no `..`, nothing but
regular files and folders (no symlinks, hardlinks, devices, FIFOs), no duplicates, one top folder; then only
the checked regular files are extracted (tarfile's `data` filter on top).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

GZIP_LEVEL = 6  # 9 is ~3x slower on float weights for ~1 % smaller files


def release_files(root: Path) -> list[str]:
    """Relative POSIX paths of every regular file under `root`, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            out.append((Path(dirpath) / fn).relative_to(root).as_posix())
    return sorted(out)


def _info(name: str, *, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    ti.mode = 0o755 if is_dir else 0o644
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.size = 0 if is_dir else size
    return ti


def _write_tar(root: Path, top: str, fileobj: Any) -> None:
    """The uncompressed canonical tar stream of folder `root` under `top/`."""
    files = release_files(root)
    dirs = sorted({str(PurePosixPath(f).parent) for f in files if "/" in f})
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(_info(top, is_dir=True))
        entries = [(d, True) for d in dirs] + [(f, False) for f in files]
        for rel, is_dir in sorted(entries):
            if is_dir:
                tf.addfile(_info(f"{top}/{rel}", is_dir=True))
            else:
                path = root / rel
                with open(path, "rb") as fh:
                    tf.addfile(_info(f"{top}/{rel}", is_dir=False, size=path.stat().st_size), fh)


def write_tarball(root: Path, top: str, dest: Path) -> str:
    """Write the release folder `root` to `dest` as a gzip'd tar whose bytes depend only on the files' paths and
    contents (streamed: memory stays small for large models). Returns the tarball's sha256, hashed as written."""
    with open(dest, "wb") as raw:
        sink = _HashSink(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=GZIP_LEVEL) as gz:
            _write_tar(root, top, gz)
    return sink.h.hexdigest()


class _HashSink:
    """A write-only file object that hashes what is written and passes it on to `out`, if given."""

    def __init__(self, out: Any = None) -> None:
        self.h = hashlib.sha256()
        self.n = 0
        self.out = out

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.n += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


# the 10-byte gzip header `write_tarball` writes: magic, deflate, no flags, mtime 0, XFL for level 6, OS unknown
CANONICAL_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def check_canonical(tar_path: Path, extracted: Path, top: str) -> list[str]:
    """Failures where the tarball is not exactly the deterministic archive of its extracted content.

    Reads the whole gzip stream (CRC32 and length are checked), rejects trailing data, compares the gzip header
    with the canonical one and the decompressed tar stream with the canonical tar of the extracted files (sha256
    of both; independent of the zlib build, which may compress differently)."""
    failures = []
    with open(tar_path, "rb") as f:
        head = f.read(10)
        # byte 8 (XFL) only hints the compression level, which may differ between edgecompress versions
        if len(head) < 10 or head[:8] + head[9:] != CANONICAL_GZIP_HEADER[:8] + CANONICAL_GZIP_HEADER[9:] \
                or head[8] not in (0, 2, 4):
            failures.append(f"tarball: gzip header {head.hex()} differs from the deterministic one "
                            f"{CANONICAL_GZIP_HEADER.hex()} (name, mtime, flags or OS byte changed)")
        f.seek(0)
        d = zlib.decompressobj(wbits=31)
        got = hashlib.sha256()
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                got.update(d.decompress(chunk))
                if d.eof:
                    rest = d.unused_data + f.read()
                    if rest:
                        failures.append(f"tarball: {len(rest)} bytes of trailing data after the gzip stream")
                    break
            got.update(d.flush())
        except zlib.error as exc:
            return failures + [f"tarball: corrupt gzip stream ({exc})"]
        if not d.eof:
            return failures + ["tarball: truncated gzip stream (no end marker, CRC32 and length unchecked)"]
    sink = _HashSink()
    _write_tar(extracted, top, sink)
    if sink.h.hexdigest() != got.hexdigest():
        failures.append("tarball: the archive is not the deterministic tar of its content (entry order, headers, "
                        "modes, owners, times or padding differ; a repacked or edited archive)")
    return failures


def check_members(members: list[tarfile.TarInfo]) -> tuple[list[str], list[tarfile.TarInfo], str | None]:
    """(failures, safe regular-file members, the top folder name)."""
    failures: list[str] = []
    safe: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    tops: set[str] = set()
    for m in members:
        name = m.name
        p = PurePosixPath(name)
        bad = False
        if name.startswith("/") or p.is_absolute() or (len(name) > 1 and name[1] == ":"):
            failures.append(f"tarball: entry {name!r} has an absolute path")
            bad = True
        if ".." in p.parts:
            failures.append(f"tarball: entry {name!r} contains '..' (path traversal)")
            bad = True
        if m.issym() or m.islnk():
            failures.append(f"tarball: entry {name!r} is a {'symlink' if m.issym() else 'hardlink'} "
                            f"(to {m.linkname!r}); releases hold regular files only")
            bad = True
        elif m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            failures.append(f"tarball: entry {name!r} is a device or FIFO; releases hold regular files only")
            bad = True
        elif not (m.isfile() or m.isdir()):
            failures.append(f"tarball: entry {name!r} has unsupported type {m.type!r}")
            bad = True
        norm = str(p)
        if norm in seen:
            failures.append(f"tarball: entry {name!r} appears more than once")
            bad = True
        seen.add(norm)
        if not bad and p.parts:
            tops.add(p.parts[0])
            if m.isfile():
                if len(p.parts) < 2:
                    failures.append(f"tarball: file {name!r} lies outside the release's top folder")
                else:
                    safe.append(m)
    top = None
    if len(tops) > 1:
        failures.append(f"tarball: expected one top folder, found {sorted(tops)}")
    elif tops:
        top = next(iter(tops))
    return failures, safe, top


def extract_checked(tar_path: Path, dest: Path) -> tuple[list[str], str | None]:
    """Check every member; extract only the safe regular files of the top folder into `dest`.

    Returns (failures, top folder name). `dest` receives the top folder's contents (without the top folder).
    """
    try:
        tf = tarfile.open(tar_path, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        return [f"tarball: cannot read {tar_path.name} as a gzip'd tar ({exc})"], None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            return [f"tarball: corrupt archive ({exc})"], None
        failures, safe, top = check_members(members)
        if top is None:
            return failures or ["tarball: empty archive"], None
        for m in safe:
            parts = PurePosixPath(m.name).parts
            if parts[0] != top:
                continue
            rel = PurePosixPath(*parts[1:])
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                failures.append(f"tarball: cannot read entry {m.name!r}")
                continue
            try:
                with open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh, 1 << 20)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                failures.append(f"tarball: entry {m.name!r} cannot be read ({exc})")
    return failures, top
