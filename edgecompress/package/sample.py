"""The release's `sample/`: one input, its expected output, and the tolerance, in reproducible files.

`np.savez` stamps the current time into its zip entries, so the .npz files are written here with fixed
zip metadata (entries in sorted key order, 1980-01-01 timestamps, stored uncompressed): same arrays, same bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

INPUT = "sample/input.npz"
EXPECTED = "sample/expected_output.npz"
TOLERANCE = "sample/tolerance.json"

_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A .npz (readable by np.load) whose bytes depend only on the arrays."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            arr_buf = io.BytesIO()
            np.lib.format.write_array(arr_buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, arr_buf.getvalue())
    return buf.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def tolerance_doc(tol: float, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {
        "rel_tol": tol,
        "rule": "for every output: max|expected - got| <= rel_tol * max(max|expected|, 1)",
        "inputs": inputs,
        "outputs": outputs,
        "produced_by": "model.onnx under ONNX Runtime (CPU EP, one thread, all graph optimizations)",
        "ort_session_options": {"session.enable_saved_runtime_optimizations": "1"},
    }


def write_sample(root: Path, feed: dict[str, np.ndarray], outputs: dict[str, np.ndarray], tol: float) -> None:
    (root / "sample").mkdir(exist_ok=True)
    (root / INPUT).write_bytes(npz_bytes(feed))
    (root / EXPECTED).write_bytes(npz_bytes(outputs))
    doc = tolerance_doc(tol, sorted(feed), list(outputs))
    (root / TOLERANCE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
