"""`verify(path)`: check a release folder or tarball end to end; list every failure, never stop at the first.

Checks: safe archive (no absolute paths, no '..', only regular files and folders: no symlinks, hardlinks,
devices), manifest schema and integrity digest, sha256 and size of every file, no missing or extra files,
manifest facts that can be re-derived from model.onnx (I/O signature, opsets, op census), then model.onnx
and model.ort load in ONNX Runtime and reproduce sample/expected_output.npz within the recorded tolerance.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

from ..errors import EdgecompressError, InputError
from ..fsutil import private_tempdir, sha256_file
from . import manifest as mf
from .config import VerifyReport
from .ortformat import ort_session
from .sample import EXPECTED, INPUT, TOLERANCE, read_npz
from .tarball import check_canonical, extract_checked


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Verify a release folder or a release .tar.gz. `report.ok` only if every check holds."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise InputError(f"release not found: {p}", hint="give a release folder or its .tar.gz")
    if p.is_dir() and not p.is_symlink():
        failures, checks, m = _verify_folder(p)
        return _report(str(p), failures, checks, m)
    if p.is_symlink():
        return VerifyReport(str(p), (f"{p.name} is a symlink; give the release itself",), ())
    with private_tempdir("edgecompress-verify-") as tmp:
        failures, top = extract_checked(p, tmp)
        checks = ["tarball entries are safe (no absolute paths, '..', links or devices)"] if not failures else []
        if top is None:
            return VerifyReport(str(p), tuple(failures), tuple(checks))
        if not failures:
            canon = check_canonical(p, tmp, top)
            failures += canon
            if not canon:
                checks.append("tarball is byte-for-byte the deterministic archive of its content (gzip CRC checked)")
        f2, c2, m = _verify_folder(tmp)
        return _report(str(p), failures + f2, checks + c2, m)


def _report(source: str, failures: list[str], checks: list[str], m: dict[str, Any] | None) -> VerifyReport:
    name = m.get("name") if isinstance(m, dict) and isinstance(m.get("name"), str) else None
    version = m.get("version") if isinstance(m, dict) and isinstance(m.get("version"), str) else None
    return VerifyReport(source, tuple(failures), tuple(checks), name, version)


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """(regular files as relative POSIX paths, failures for anything else: symlinks, devices, sockets...)."""
    files, failures = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in list(dirnames):
            full = Path(dirpath) / d
            if full.is_symlink():
                failures.append(f"{full.relative_to(root).as_posix()}: is a symlink (releases hold regular files only)")
                dirnames.remove(d)
        for fn in filenames:
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                failures.append(f"{rel}: is a symlink (releases hold regular files only)")
            elif not stat.S_ISREG(mode):
                failures.append(f"{rel}: is not a regular file")
            else:
                files.append(rel)
    return sorted(files), failures


def _verify_folder(root: Path) -> tuple[list[str], list[str], dict[str, Any] | None]:
    files, failures = _walk(root)
    checks: list[str] = []
    if mf.MANIFEST not in files:
        failures.append("manifest.json is missing")
        return failures, checks, None
    try:
        m = json.loads((root / mf.MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        failures.append(f"manifest.json is not valid JSON ({exc})")
        return failures, checks, None
    schema_errs = mf.check_schema(m)
    failures += schema_errs
    if not schema_errs:
        checks.append("manifest schema")
    integ = mf.check_integrity(m) if isinstance(m, dict) else []
    failures += integ
    if isinstance(m, dict) and not integ and not schema_errs:
        checks.append("manifest integrity digest")
    files_v = m.get("files") if isinstance(m, dict) else None
    listed: dict[str, Any] = files_v if isinstance(files_v, dict) else {}
    hashes_ok = _check_files(root, files, listed, failures, checks)
    if hashes_ok.get("model.onnx") and isinstance(m, dict) and isinstance(m.get("model"), dict):
        _check_model_facts(root, m, failures, checks)
    if isinstance(m, dict) and isinstance(m.get("metrics"), dict):
        _check_sizes(m, listed, failures)
    _check_runtime(root, files, failures, checks, m if isinstance(m, dict) else {})
    return failures, checks, m if isinstance(m, dict) else None


def _check_files(root: Path, files: list[str], listed: dict[str, Any], failures: list[str],
                 checks: list[str]) -> dict[str, bool]:
    ok: dict[str, bool] = {}
    present = set(files) - {mf.MANIFEST}
    n0 = len(failures)
    for name in sorted(set(listed) - present):
        failures.append(f"{name}: listed in the manifest but missing from the release")
    for name in sorted(present - set(listed)):
        failures.append(f"{name}: extra file not listed in the manifest")
    for name in sorted(set(listed) & present):
        entry = listed[name] if isinstance(listed[name], dict) else {}
        size = (root / name).stat().st_size
        good = True
        if entry.get("size") != size:
            failures.append(f"{name}: size {size} bytes, manifest says {entry.get('size')}")
            good = False
        digest = sha256_file(root / name)
        if entry.get("sha256") != digest:
            failures.append(f"{name}: sha256 mismatch (file {digest[:16]}..., manifest {str(entry.get('sha256'))[:16]}...)")
            good = False
        ok[name] = good
    if len(failures) == n0:
        checks.append(f"{len(listed)} files: sha256 and size match, none missing, none extra")
    return ok


def _check_model_facts(root: Path, m: dict[str, Any], failures: list[str], checks: list[str]) -> None:
    try:
        from ..onnxgraph.io import load_model

        actual = mf.model_section(load_model(root / "model.onnx"))
    except EdgecompressError as exc:
        failures.append(f"model.onnx: cannot be loaded ({exc.message})")
        return
    n0 = len(failures)
    for key in ("inputs", "outputs", "opset", "op_census", "params", "quant_state", "weight_format"):
        if key == "weight_format" and key not in m["model"]:  # added within schema 1; older releases lack it
            continue
        if m["model"].get(key) != actual[key]:
            failures.append(f"manifest: model.{key} does not match model.onnx "
                            f"(manifest {json.dumps(m['model'].get(key))[:120]}, model {json.dumps(actual[key])[:120]})")
    if len(failures) == n0:
        checks.append("manifest I/O signature, opsets, op census and weight format match model.onnx")


def _check_sizes(m: dict[str, Any], listed: dict[str, Any], failures: list[str]) -> None:
    size = m["metrics"].get("size") if isinstance(m["metrics"].get("size"), dict) else {}
    for key, fname in (("onnx_bytes", "model.onnx"), ("ort_bytes", "model.ort")):
        entry = listed.get(fname)
        if isinstance(entry, dict) and key in size and size[key] != entry.get("size"):
            failures.append(f"manifest: metrics.size.{key} is {size[key]}, but {fname} is {entry.get('size')} bytes")


def _no_ort(m: dict[str, Any]) -> bool:
    """The release says why it has no model.ort (a model over 2 GB: the ORT format cannot hold it)."""
    ort = m.get("ort")
    return isinstance(ort, dict) and isinstance(ort.get("skipped"), str) and bool(ort["skipped"])


def _check_external_data(root: Path, m: dict[str, Any], failures: list[str], checks: list[str]) -> None:
    """model.onnx's external data files are the ones the manifest names (each one hashed in `files`)."""
    from ..onnxgraph.io import model_files

    try:
        actual = [f.relative_to(root).as_posix() for f in model_files(root / "model.onnx")[1:]]
    except Exception as exc:  # noqa: BLE001 - an unreadable model.onnx is reported by the other checks too
        failures.append(f"model.onnx: cannot list its external data ({type(exc).__name__})")
        return
    named = (m.get("model") or {}).get("external_data", [])
    if sorted(actual) != sorted(named if isinstance(named, list) else []):
        failures.append(f"model.onnx reads external data {actual}, the manifest names {named}")
    elif actual:
        checks.append(f"model.onnx's external data ({', '.join(actual)}) is the manifest's and hashed there")


def _check_runtime(root: Path, files: list[str], failures: list[str], checks: list[str],
                   m: dict[str, Any]) -> None:
    from ..onnxgraph.runtime import compare_outputs, make_session

    no_ort = _no_ort(m)
    if "model.onnx" in files:
        _check_external_data(root, m, failures, checks)
    if no_ort:
        if "model.ort" in files:
            failures.append("model.ort is present, but the manifest says there is none "
                            f"({m['ort']['skipped']})")
        else:
            checks.append(f"no model.ort, as the manifest says: {m['ort']['skipped']}")
    need = ["model.onnx", *([] if no_ort else ["model.ort"]), INPUT, EXPECTED, TOLERANCE]
    missing = [n for n in need if n not in files]
    if missing:
        failures.append(f"cannot run the sample check: missing {', '.join(missing)}")
        return
    try:
        feed = read_npz(root / INPUT)
        expected = read_npz(root / EXPECTED)
        tol_doc = json.loads((root / TOLERANCE).read_text(encoding="utf-8"))
        tol = float(tol_doc["rel_tol"])
        out_names = list(tol_doc.get("outputs") or sorted(expected))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        failures.append(f"sample/: unreadable ({type(exc).__name__}: {exc})")
        return
    if set(out_names) != set(expected):
        failures.append(f"sample/: tolerance.json lists outputs {out_names}, expected_output.npz has {sorted(expected)}")
        return
    for fname in ("model.onnx",) + (() if no_ort else ("model.ort",)):
        try:
            sess = (ort_session(root / fname) if fname.endswith(".ort") else make_session(root / fname, origin=fname))
            got = sess.run(out_names, feed)
        except EdgecompressError as exc:
            failures.append(f"{fname}: {exc.message}")
            continue
        except Exception as exc:  # ORT's own error types for a bad feed
            failures.append(f"{fname}: ONNX Runtime failed on the sample input: {' '.join(str(exc).split())[:300]}")
            continue
        cmp = compare_outputs([[expected[n]] for n in out_names], [[g] for g in got], out_names, rel_tol=tol)
        if cmp.ok:
            checks.append(f"{fname} loads in ONNX Runtime and reproduces the sample output (rel_tol {tol:g})")
        else:
            failures.append(f"{fname}: sample output differs beyond rel_tol {tol:g}: {cmp.summary()}")
