"""verify(): accepts a good release (folder and tarball); rejects every kind of tampering, listing each failure."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from edgecompress.errors import InputError
from edgecompress.package import verify
from edgecompress.package.manifest import REQUIRED_FILES, dumps, seal

ALL_FILES = [*REQUIRED_FILES, "manifest.json"]


def _retar(folder: Path, dest: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]] = (), top: str = "rel") -> Path:
    """A tarball of `folder` under `top/`, plus hand-made `extra` members (evil entries)."""
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname=top)
        for info, data in extra:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _member(name: str, *, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> tuple:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, (data if kind == tarfile.REGTYPE else None)


def test_good_release_verifies(release_copy):
    folder, tar = release_copy
    for src in (folder, tar):
        rep = verify(src)
        assert rep.ok, rep.failures
        assert rep.name == "digits" and rep.version == "1.0.0"
        assert any("model.ort loads" in c for c in rep.checks)
        assert any("model.onnx loads" in c for c in rep.checks)
        assert rep.to_dict()["ok"] is True


@pytest.mark.parametrize("name", ALL_FILES)
def test_flipped_byte_in_any_file_is_rejected(release_copy, name):
    folder, _ = release_copy
    p = folder / name
    data = bytearray(p.read_bytes())
    i = len(data) // 2
    data[i] ^= 0x01
    p.write_bytes(bytes(data))
    rep = verify(folder)
    assert not rep.ok
    text = " ".join(rep.failures)
    if name == "manifest.json":
        assert "manifest" in text
    else:
        assert f"{name}: sha256 mismatch" in text


def test_flipped_byte_in_tarball_is_rejected(release_copy):
    _, tar = release_copy
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tar.write_bytes(bytes(data))
    rep = verify(tar)
    assert not rep.ok and rep.failures


def test_missing_and_extra_files_are_rejected_together(release_copy):
    folder, _ = release_copy
    (folder / "model.ort").unlink()
    (folder / "sample" / "notes.txt").write_text("hi")
    rep = verify(folder)
    assert not rep.ok
    assert "model.ort: listed in the manifest but missing from the release" in rep.failures
    assert "sample/notes.txt: extra file not listed in the manifest" in rep.failures
    assert any("missing model.ort" in f for f in rep.failures)  # the sample check cannot run either


def test_missing_manifest(release_copy):
    folder, _ = release_copy
    (folder / "manifest.json").unlink()
    assert verify(folder).failures == ("manifest.json is missing",)


def test_hand_edited_manifest_is_rejected(release_copy):
    folder, _ = release_copy
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    m["metrics"]["accuracy"]["model"] = 0.999
    p.write_text(json.dumps(m, indent=2))
    rep = verify(folder)
    assert not rep.ok and any("integrity digest mismatch" in f for f in rep.failures)


def test_resealed_manifest_with_false_facts_is_rejected(release_copy):
    """Someone who recomputes the digest still cannot lie about what the files are."""
    folder, _ = release_copy
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    m["model"]["inputs"][0]["shape"] = [1, 1, 28, 28]
    m["model"]["op_census"]["Conv"] = 99
    m["metrics"]["size"]["onnx_bytes"] += 1
    p.write_text(dumps(seal(m)))
    rep = verify(folder)
    assert not rep.ok
    text = " | ".join(rep.failures)
    assert "model.inputs does not match model.onnx" in text
    assert "model.op_census does not match" in text
    assert "metrics.size.onnx_bytes" in text


def test_manifest_schema_errors(release_copy):
    folder, _ = release_copy
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    m["schema_version"] = 2
    del m["toolchain"]
    m["files"]["../evil"] = {"sha256": "0" * 64, "size": 1}
    p.write_text(dumps(seal(m)))
    text = " | ".join(verify(folder).failures)
    assert "schema_version is 2" in text and "missing key 'toolchain'" in text
    assert "'../evil' is not a safe relative path" in text


@pytest.mark.parametrize("member,expect", [
    (_member("rel/../../escape.txt"), "contains '..'"),
    (_member("../outside.txt"), "contains '..'"),
    (_member("/etc/evil.txt"), "absolute path"),
    (_member("rel/link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "is a symlink"),
    (_member("rel/hard", kind=tarfile.LNKTYPE, link="rel/model.onnx"), "is a hardlink"),
    (_member("rel/dev", kind=tarfile.CHRTYPE), "device or FIFO"),
    (_member("rel/fifo", kind=tarfile.FIFOTYPE), "device or FIFO"),
], ids=["dotdot-inside", "dotdot-top", "absolute", "symlink", "hardlink", "chardev", "fifo"])
def test_unsafe_tar_entries_are_rejected(release_copy, tmp_path, member, expect):
    folder, _ = release_copy
    tar = _retar(folder, tmp_path / "evil.tar.gz", [member])
    rep = verify(tar)
    assert not rep.ok
    assert any(expect in f for f in rep.failures), rep.failures
    # nothing escaped into the filesystem
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_repacked_tarball_is_rejected_but_its_content_passes(release_copy, tmp_path):
    """A content-identical archive made by another tool is not the release's deterministic tarball."""
    folder, _ = release_copy
    rep = verify(_retar(folder, tmp_path / "re.tar.gz"))
    assert not rep.ok
    assert all(f.startswith("tarball:") for f in rep.failures), rep.failures
    assert any("gzip header" in f for f in rep.failures)
    assert any("not the deterministic tar" in f for f in rep.failures)
    assert any("model.ort loads" in c for c in rep.checks)  # the content itself still checks out


@pytest.mark.parametrize("where", ["gzip-mtime", "gzip-os", "crc", "isize", "last-deflate", "trailing", "truncated"])
def test_tarball_container_tampering_is_rejected(release_copy, where):
    _, tar = release_copy
    data = bytearray(tar.read_bytes())
    if where == "gzip-mtime":
        data[4] ^= 1
    elif where == "gzip-os":
        data[9] ^= 1
    elif where == "crc":
        data[-8] ^= 1
    elif where == "isize":
        data[-1] ^= 1
    elif where == "last-deflate":
        data[-9] ^= 1
    elif where == "trailing":
        data += b"\0" * 16
    else:
        del data[-4:]
    tar.write_bytes(bytes(data))
    rep = verify(tar)
    assert not rep.ok and any(f.startswith("tarball:") for f in rep.failures), rep.failures


def test_corrupt_deflate_stream_is_a_listed_failure(release_copy):
    """Random flips inside the compressed data never escape verify() as an exception."""
    import random

    _, tar = release_copy
    good = tar.read_bytes()
    rng = random.Random(0)
    for _ in range(25):
        data = bytearray(good)
        i = rng.randrange(10, len(data) - 8)
        data[i] ^= rng.randrange(1, 256)
        tar.write_bytes(bytes(data))
        rep = verify(tar)
        assert not rep.ok and rep.failures, i


def test_symlink_in_folder_is_rejected(release_copy):
    folder, _ = release_copy
    os.symlink("/etc/hostname", folder / "sample" / "link")
    rep = verify(folder)
    assert any("sample/link: is a symlink" in f for f in rep.failures)


def test_model_that_no_longer_matches_sample(release_copy):
    """A consistent-looking release whose expected output is wrong fails the runtime check for both files."""
    import numpy as np

    from edgecompress.fsutil import sha256_file
    from edgecompress.package.sample import npz_bytes, read_npz

    folder, _ = release_copy
    exp = read_npz(folder / "sample/expected_output.npz")
    (folder / "sample/expected_output.npz").write_bytes(npz_bytes({k: v + np.float32(5) for k, v in exp.items()}))
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    f = folder / "sample/expected_output.npz"
    m["files"]["sample/expected_output.npz"] = {"sha256": sha256_file(f), "size": f.stat().st_size}
    p.write_text(dumps(seal(m)))
    rep = verify(folder)
    assert any(x.startswith("model.onnx: sample output differs") for x in rep.failures)
    assert any(x.startswith("model.ort: sample output differs") for x in rep.failures)


def test_not_found(tmp_path):
    with pytest.raises(InputError, match="release not found"):
        verify(tmp_path / "nope")


def test_not_a_tarball(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_bytes(b"not a tarball")
    rep = verify(p)
    assert not rep.ok and "cannot read" in rep.failures[0]
