"""Content-hash cache of stage outputs: DIR/stages/<n>-<stage>/ with `stage.json` written last.

A stage's key hashes its inputs' content (model file bytes, data bytes, factory source), its config, the
target profile and the tool version. A stage folder is complete only when its `stage.json` exists and records
the same key: the folder is built under a temp name, the marker is written last (atomically) inside it, then
the folder is swapped into place, so a run killed at any moment leaves either the old complete folder, no
folder, or a `.tmp` leftover that the next run removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact import config_to_dict
from ..fsutil import atomic_dir, atomic_write_text, sha256_file

MARKER = "stage.json"
SCHEMA = 1


def stable_json(obj: Any) -> str:
    return json.dumps(config_to_dict(obj), sort_keys=True, separators=(",", ":"), default=str)


def stage_key(stage: str, config: Any, inputs: dict[str, Any]) -> str:
    payload = {"schema": SCHEMA, "tool": __version__, "stage": stage, "config": config, "inputs": inputs}
    return hashlib.sha256(stable_json(payload).encode()).hexdigest()


def path_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's sorted (relative name, file hash) list."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for rel, digest in file_hashes(p).items():
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file below `folder`, sorted by path."""
    return {f.relative_to(folder).as_posix(): sha256_file(f) for f in sorted(q for q in folder.rglob("*")
                                                                              if q.is_file())}


def data_hash(spec: str) -> str:
    """Content hash of a [data] entry (files by bytes; entry points by the feeds they yield)."""
    if not spec:
        return ""
    p = Path(spec)
    if p.exists():
        return path_hash(p)
    from ..data import load_data

    return load_data(spec).content_hash()


def source_hash(source: str) -> str:
    """A model source's content: the file's bytes (.onnx/.pt2/.py), or the module's file for package.module:fn."""
    file_part = source.rpartition(":")[0] if ":" in source and not source.endswith((".onnx", ".pt2")) else source
    if file_part.endswith(".py") or Path(file_part).is_file():
        return sha256_file(file_part)
    import importlib.util

    with contextlib.suppress(ImportError, ValueError, AttributeError):
        spec = importlib.util.find_spec(file_part)
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            return sha256_file(spec.origin)
    return f"module:{source}"


@dataclass(frozen=True)
class StageDir:
    root: Path  # DIR/stages
    index: int
    stage: str

    @property
    def path(self) -> Path:
        return self.root / f"{self.index}-{self.stage}"

    def load(self, key: str) -> dict[str, Any] | None:
        """The completed record for `key`, or None (missing, incomplete, other key, unreadable)."""
        marker = self.path / MARKER
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or record.get("schema") != SCHEMA:
            return None
        for name in record.get("files", {}):
            if not (self.path / name).exists():
                return None
        return record

    @contextlib.contextmanager
    def build(self, key: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Yield (temp folder, record); on success write the record as the marker, last, and swap in."""
        self.root.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"schema": SCHEMA, "stage": self.stage, "index": self.index, "key": key,
                                  "tool_version": __version__}
        with atomic_dir(self.path) as tmp:
            yield tmp, record
            record["files"] = file_hashes(tmp)
            atomic_write_text(tmp / MARKER, json.dumps(config_to_dict(record), indent=2, sort_keys=True,
                                                       default=str) + "\n")


def clean_leftovers(root: Path) -> list[str]:
    """Remove temp folders of stages that were killed mid-build (`.<n>-<stage>.*.tmp` / `.old`)."""
    removed = []
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def remove_stale(root: Path, keep: set[str]) -> None:
    """Drop stage folders that are not part of the current plan (a recipe that lost a stage)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and not p.name.startswith(".") and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
