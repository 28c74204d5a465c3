"""Output discipline: atomic writes leave either the old file or the new one, never a partial or temp file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgecompress.errors import InputError, OutputError
from edgecompress.fsutil import (
    atomic_copy,
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_path,
    private_tempdir,
    read_bytes_checked,
    require_file,
    sha256_file,
    working_directory,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "out.bin"
    atomic_write_bytes(dest, b"one")
    atomic_write_text(dest, "two")
    assert dest.read_text() == "two" and _names(tmp_path) == ["out.bin"]
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)


def test_failure_inside_atomic_path_keeps_old_file(tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(dest) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.")
            tmp.write_bytes(b"partial new content")
            raise RuntimeError("boom")
    assert dest.read_bytes() == b"old" and _names(tmp_path) == ["model.onnx"]


def test_failure_without_old_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "new.onnx") as tmp:
            tmp.write_bytes(b"x" * 1000)
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "a.onnx") as tmp:
            tmp.unlink()
    assert _names(tmp_path) == []


@pytest.mark.parametrize("make,match", [
    (lambda t: t / "missing" / "x.onnx", "does not exist"),
    (lambda t: (t / "file").write_text("") or t / "file" / "x.onnx", "not a directory"),
    (lambda t: (t / "dir").mkdir() or t / "dir", "existing directory"),
])
def test_check_output_path_fails_early(tmp_path, make, match):
    dest = make(tmp_path)
    before = _names(tmp_path)
    with pytest.raises(OutputError, match=match):
        check_output_path(dest)
    with pytest.raises(OutputError, match=match):
        atomic_write_bytes(dest, b"x")
    assert _names(tmp_path) == before


def test_check_output_dir(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="not a directory"):
        check_output_dir(tmp_path / "f")


def test_atomic_dir_swaps_in_complete_folder(tmp_path):
    dest = tmp_path / "release"
    with atomic_dir(dest) as d:
        (d / "a.txt").write_text("1")
    assert _names(dest) == ["a.txt"]
    with pytest.raises(ValueError):
        with atomic_dir(dest) as d:
            (d / "b.txt").write_text("2")
            raise ValueError
    assert _names(dest) == ["a.txt"] and _names(tmp_path) == ["release"]
    with atomic_dir(dest) as d:
        (d / "c.txt").write_text("3")
    assert _names(dest) == ["c.txt"] and _names(tmp_path) == ["release"]


def test_atomic_copy_and_sha256(tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom(3 << 20)
    src.write_bytes(data)
    atomic_copy(src, tmp_path / "dst.bin")
    assert sha256_file(tmp_path / "dst.bin") == hashlib.sha256(data).hexdigest() == sha256_file(src)


def test_private_tempdir_removed_on_success_and_failure(tmp_path):
    with private_tempdir() as d:
        (d / "x").write_text("1")
        assert oct(d.stat().st_mode & 0o777) == oct(0o700)
        assert tmp_path not in d.parents
    assert not d.exists()
    with pytest.raises(RuntimeError):
        with private_tempdir() as d2:
            (d2 / "big.data").write_bytes(b"0" * 1000)
            raise RuntimeError
    assert not d2.exists()


def test_working_directory_restores(tmp_path):
    before = os.getcwd()
    with pytest.raises(RuntimeError):
        with working_directory(tmp_path):
            assert os.getcwd() == str(tmp_path)
            raise RuntimeError
    assert os.getcwd() == before


def test_require_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        require_file(tmp_path / "nope", "model")
    with pytest.raises(InputError, match="is a directory"):
        require_file(tmp_path, "model")
    (tmp_path / "f").write_bytes(b"abc")
    assert require_file(tmp_path / "f") == tmp_path / "f" and read_bytes_checked(tmp_path / "f") == b"abc"
