"""manifest.json: what the release holds, where it came from, what was measured; its schema and integrity.

The manifest lists the sha256 and size of every other file in the release. It cannot hash itself, so it
carries `integrity.digest`: the sha256 of its own canonical JSON without the `integrity` key. A hand edit
that does not recompute it is caught; one that does is still caught where the edited field can be checked
against the files (I/O signature, opset, op census, sizes, file list, hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import PurePosixPath
from typing import Any

SCHEMA_VERSION = 1
KIND = "edgecompress-release"
MANIFEST = "manifest.json"
REQUIRED_FILES = ("model.onnx", "model.ort", "required_operators.config", "report.html", "MODEL_CARD.md",
                  "sample/input.npz", "sample/expected_output.npz", "sample/tolerance.json")

# key -> expected JSON type(s) of the top level
_TOP_SCHEMA: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "kind": (str,),
    "name": (str,),
    "version": (str,),
    "description": (str,),
    "files": (dict,),
    "model": (dict,),
    "ort": (dict,),
    "target": (dict,),
    "toolchain": (dict,),
    "lineage": (list,),
    "calibration": (dict, type(None)),
    "evaluation": (dict, type(None)),
    "metrics": (dict,),
    "budgets": (dict,),
    "mobile": (dict, type(None)),
    "sample": (dict,),
    "reproducible": (bool,),
    "package_config": (dict,),
    "integrity": (dict,),
}
_OPTIONAL = {"package_config"}  # added within schema 1; older releases lack it
_MODEL_SCHEMA = {"inputs": list, "outputs": list, "opset": dict, "op_census": dict, "params": int,
                 "quant_state": str}
_METRIC_KEYS = ("size", "latency", "accuracy")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def digest(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "integrity"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in manifest.items() if k != "integrity"}
    out["integrity"] = {"algorithm": "sha256", "scope": "canonical JSON of this manifest without 'integrity'",
                        "digest": digest(out)}
    return out


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def toolchain() -> dict[str, str]:
    """Versions of what built the release (read from package metadata; torch is not imported)."""
    from .. import __version__

    out = {"edgecompress": __version__, "python": platform.python_version()}
    for dist in ("onnx", "onnxruntime", "numpy", "onnx-ir", "onnxscript", "torch", "flatbuffers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def portable(value: Any) -> Any:
    """Lineage/config values with absolute paths reduced to their file name (a release names no local paths)."""
    if isinstance(value, dict):
        return {str(k): portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")) and len(value) < 4096:
        return PurePosixPath(value.replace("\\", "/")).name
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def safe_relpath(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and p.as_posix() == name


def check_schema(m: Any) -> list[str]:
    """Structural problems of a parsed manifest (empty when it matches schema_version 1)."""
    if not isinstance(m, dict):
        return ["manifest: top level is not a JSON object"]
    errs = []
    if m.get("schema_version") != SCHEMA_VERSION:
        errs.append(f"manifest: schema_version is {m.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if m.get("kind") != KIND:
        errs.append(f"manifest: kind is {m.get('kind')!r}, expected {KIND!r}")
    for key, types in _TOP_SCHEMA.items():
        if key not in m:
            if key not in _OPTIONAL:
                errs.append(f"manifest: missing key {key!r}")
        elif not isinstance(m[key], types) or (bool not in types and isinstance(m[key], bool)):
            errs.append(f"manifest: {key!r} has type {type(m[key]).__name__}, expected "
                        f"{' or '.join(t.__name__ for t in types)}")
    extra = sorted(set(m) - set(_TOP_SCHEMA))
    if extra:
        errs.append(f"manifest: unknown keys {extra}")
    files = m.get("files")
    if isinstance(files, dict):
        for name, entry in files.items():
            if not safe_relpath(name):
                errs.append(f"manifest: file name {name!r} is not a safe relative path")
            if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                    or len(entry.get("sha256", "")) != 64 or isinstance(entry.get("size"), bool)
                    or not isinstance(entry.get("size"), int) or entry["size"] < 0):
                errs.append(f"manifest: files[{name!r}] must be {{sha256: 64 hex chars, size: int >= 0}}")
        if MANIFEST in files:
            errs.append("manifest: files must not list manifest.json itself")
        ort = m.get("ort")
        no_ort = isinstance(ort, dict) and isinstance(ort.get("skipped"), str) and bool(ort["skipped"])
        for need in REQUIRED_FILES:
            if need == "model.ort" and no_ort:  # a model over 2 GB: the ORT format cannot hold it (ort.skipped)
                continue
            if need not in files:
                errs.append(f"manifest: files does not list required file {need!r}")
    model = m.get("model")
    if isinstance(model, dict):
        for key, typ in _MODEL_SCHEMA.items():
            if not isinstance(model.get(key), typ) or isinstance(model.get(key), bool):
                errs.append(f"manifest: model.{key} missing or not a {typ.__name__}")
    metrics = m.get("metrics")
    if isinstance(metrics, dict):
        for key in _METRIC_KEYS:
            if key not in metrics:
                errs.append(f"manifest: metrics.{key} missing")
    integ = m.get("integrity")
    if isinstance(integ, dict) and not isinstance(integ.get("digest"), str):
        errs.append("manifest: integrity.digest missing")
    return errs


def check_integrity(m: dict[str, Any]) -> list[str]:
    integ = m.get("integrity")
    if not isinstance(integ, dict) or not isinstance(integ.get("digest"), str):
        return []
    want = digest(m)
    if integ["digest"] != want:
        return [f"manifest: integrity digest mismatch (recorded {integ['digest'][:16]}..., content hashes to "
                f"{want[:16]}...): manifest.json was edited after packaging"]
    return []


def model_section(model: Any) -> dict[str, Any]:
    """I/O signature, opsets, op census and weight format of an onnx.ModelProto (also used by verify to re-check).

    `weight_format` ("int4 weight-only, block 32", "fp16", "int8 per-channel", "fp32") and `weights` (the
    census.weight_census rows without tensor names) name how model.onnx stores its weights."""
    from ..onnxgraph import census
    from ..onnxgraph.io import input_specs, output_specs

    weights = census.weight_census(model)
    return {
        "inputs": [t.to_dict() for t in input_specs(model)],
        "outputs": [t.to_dict() for t in output_specs(model)],
        "opset": {(imp.domain or "ai.onnx"): int(imp.version) for imp in sorted(model.opset_import,
                                                                              key=lambda i: i.domain)},
        "op_census": dict(sorted(census.op_histogram(model).items())),
        "params": int(census.count_params(model, exclude_quant_params=True)),
        "quant_state": census.quant_state(model),
        "weight_format": census.weight_format_label(weights),
        "weights": [{k: v for k, v in r.items() if k != "names"} for r in weights],
        "int8_census": _jsonable(census.int8_census(model)),
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o), sort_keys=True))
