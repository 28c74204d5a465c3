"""The zoo cache on disk: atomic, deterministic writes (npz files, npz folders), digests, the manifest, ZooModel.

Layout (outside the repository):

    <cache>/manifest.json
    <cache>/wheels/*.whl
    <cache>/<model>/model.onnx, <cache>/<model>/{calibration,eval,score}.npz (or folders of .npz)

Paths in the manifest are relative to the cache, so a cache can be moved. Every file is written under a temp
name in its destination folder and `os.replace`d into place; npz files carry fixed zip timestamps, so the same
arrays always give the same bytes (and the same sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecompress.fsutil import atomic_copy, atomic_dir, atomic_path, atomic_write_bytes, sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("calibration", "eval", "score")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ZooError(RuntimeError):
    """A zoo preparation step failed; the message says which and why."""


class ZooUsageError(ZooError):
    """The request itself is wrong (unknown model name, cache inside the repository): exit code 2."""


def default_cache() -> Path:
    env = os.environ.get("EDGECOMPRESS_ZOO", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgecompress" / "zoo"


def resolve_cache(cache: str | os.PathLike[str] | None) -> Path:
    return (Path(cache).expanduser() if cache else default_cache()).absolute()


# hashing --------------------------------------------------------------------------------------------------

def digest(path: Path) -> str:
    """sha256 of a file, or of a folder: over its sorted relative file names and their sha256."""
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise ZooError(f"{path} does not exist")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()} {sha256_file(f)}\n".encode())
    return h.hexdigest()


def recipe_key(params: dict[str, Any]) -> str:
    """A short stable hash of a build's parameters: a change in any of them rebuilds that model."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


# atomic writes: the package's own helpers (temp beside the target, moved in when complete) --------------

atomic_folder = atomic_dir


def atomic_file(dest: Path) -> AbstractContextManager[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return atomic_path(dest)


def write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, data)


def copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_copy(src, dest)


def _write_npz_to(path: Path, arrays: dict[str, np.ndarray], compress: bool) -> None:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=6 if compress else None) as z:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)


def write_npz(dest: Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> None:
    """One .npz (what np.load reads), byte-identical for identical arrays."""
    with atomic_file(dest) as tmp:
        _write_npz_to(tmp, arrays, compress)


def write_npz_folder(dest: Path, feeds: Sequence[dict[str, np.ndarray]], *, compress: bool = False,
                     extra: dict[str, bytes] | None = None) -> None:
    """A folder of one-feed .npz files named 000000.npz, 000001.npz ... (read in sorted = feed order)."""
    with atomic_folder(dest) as tmp:
        for i, feed in enumerate(feeds):
            _write_npz_to(tmp / f"{i:06d}.npz", feed, compress)
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)


def write_json(dest: Path, obj: Any) -> None:
    write_atomic(dest, (json.dumps(obj, indent=2, default=str) + "\n").encode("utf-8"))


# manifest -------------------------------------------------------------------------------------------------

def read_manifest(cache: Path) -> dict[str, Any]:
    path = cache / MANIFEST
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "models": {}}
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ZooError(f"{path}: unreadable manifest ({exc}); delete it to rebuild the zoo") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise ZooError(f"{path}: schema_version {manifest.get('schema_version') if isinstance(manifest, dict) else '?'}"
                       f" is not {SCHEMA_VERSION}; delete it to rebuild the zoo")
    manifest.setdefault("models", {})
    return manifest


def write_manifest(cache: Path, manifest: dict[str, Any]) -> None:
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["models"] = dict(sorted(manifest["models"].items()))
    write_json(cache / MANIFEST, manifest)


def entry_files(entry: dict[str, Any]) -> dict[str, str]:
    """Every output of a manifest entry (relative path -> recorded digest): model, data splits, extras."""
    files = {entry["path"]: entry["sha256"]}
    for split in entry.get("data", {}).values():
        files[split["path"]] = split["sha256"]
        if "annotations_sha256" in split:
            files[split["annotations"]] = split["annotations_sha256"]
    files.update(entry.get("extra_files", {}))
    return files


def is_fresh(entry: dict[str, Any] | None, cache: Path, recipe: str) -> bool:
    """True when the entry was built by this recipe and every output exists with its recorded sha256."""
    if not entry or entry.get("recipe") != recipe:
        return False
    for rel, sha in entry_files(entry).items():
        p = cache / rel
        if not p.exists() or digest(p) != sha:
            return False
    return True


@dataclass(frozen=True)
class ZooModel:
    """One zoo model as the manifest describes it, with absolute paths."""

    name: str
    kind: str
    path: Path
    sha256: str
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    data: dict[str, Path]  # split -> .npz file or folder of .npz
    compare: dict[str, Any]
    source: dict[str, Any]
    exporter: str
    cache: Path
    entry: dict[str, Any] = field(repr=False, default_factory=dict)  # the whole manifest entry

    @property
    def calibration(self) -> Path:
        return self.data["calibration"]

    @property
    def eval(self) -> Path:
        return self.data["eval"]

    @property
    def score(self) -> Path:
        return self.data["score"]

    def annotations(self, split: str) -> Path | None:
        """The split's annotations JSON (crop provenance, ground-truth boxes, speech flags), if it has one."""
        rel = self.entry["data"][split].get("annotations")
        return self.cache / rel if rel else None

    @classmethod
    def from_entry(cls, name: str, entry: dict[str, Any], cache: Path) -> ZooModel:
        return cls(name=name, kind=entry["kind"], path=cache / entry["path"], sha256=entry["sha256"],
                   inputs=tuple(entry["inputs"]), outputs=tuple(entry["outputs"]),
                   data={s: cache / d["path"] for s, d in entry["data"].items()}, compare=dict(entry["compare"]),
                   source=dict(entry["source"]), exporter=entry["exporter"], cache=cache, entry=entry)


def load_zoo(cache: str | os.PathLike[str] | None = None) -> dict[str, ZooModel]:
    """The prepared zoo (read from `<cache>/manifest.json`; run bench/zoo/prepare.py first)."""
    root = resolve_cache(cache)
    if not (root / MANIFEST).is_file():
        raise ZooError(f"no zoo at {root} (no {MANIFEST}); run: python bench/zoo/prepare.py --cache {root}")
    manifest = read_manifest(root)
    return {name: ZooModel.from_entry(name, e, root) for name, e in manifest["models"].items()}
