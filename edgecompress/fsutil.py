"""Output discipline: atomic writes, private temp dirs, hashing.

Every output file is written to a temp name in its destination folder and `os.replace`d into place, so an
interrupted run never leaves a partial file under an output name. Temp work happens in private temp dirs
that are removed on success and on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError, OutputError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def require_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Return `path` as a Path if it is an existing readable regular file, else raise InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputError(f"{what} is a directory, expected a file: {p}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what} is not readable: {p}")
    return p


def check_output_path(path: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Fail early (before any work) if `path` cannot be written as a file."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.exists() and p.is_dir():
        raise OutputError(f"{what} path is an existing directory, expected a file name: {p}")
    if not parent.exists():
        raise OutputError(f"{what} folder does not exist: {parent}", hint="create the folder first")
    if not parent.is_dir():
        raise OutputError(f"{what} folder is not a directory: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} folder is not writable: {parent}")
    return p


def check_output_dir(path: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """Fail early if `path` cannot be created/used as an output directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{what} exists and is not a directory: {p}")
    anchor = p
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir() or not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputError(f"{what} is not writable: {anchor}")
    return p


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success it replaces `dest`, on failure it is removed."""
    dest = Path(dest)
    check_output_path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise OutputError(f"nothing was written for {dest}")
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except OSError as exc:
        _unlink(tmp_path)
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink(tmp_path)
        raise


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def atomic_write_with(dest: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` and move the result to `dest` atomically."""
    with atomic_path(dest) as tmp:
        writer(tmp)
    return Path(dest)


@contextlib.contextmanager
def private_tempdir(prefix: str = "edgecompress-") -> Iterator[Path]:
    """A private temp dir (mode 0700) outside the working directory, always removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def working_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Run a block with the cwd set to `path` (contains tools that drop files in the cwd)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(old)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temp name beside `dest`, then swap it into place.

    An existing `dest` is replaced only after the new one is complete; on failure nothing changes.
    """
    dest = Path(dest)
    check_output_dir(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_size_mb(path: str | os.PathLike[str]) -> float:
    return os.path.getsize(path) / 1e6


def read_bytes_checked(path: str | os.PathLike[str], what: str = "file") -> bytes:
    p = require_file(path, what)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from exc
