"""Shared fixtures for the distill tests: small real MNIST subsets written to tmp files, tiny model SPECs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TINY = HERE / "tiny_models.py"
MNIST = ROOT / "examples" / "mnist_models.py"


def spec(factory: str, path: Path = TINY) -> str:
    return f"{path}:{factory}"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _subset(src: Path, n: int, dest: Path, **override) -> Path:
    z = np.load(src)
    arrays = {k: z[k][:n] for k in z.files}
    arrays.update(override)
    np.savez(dest, **arrays)
    return dest


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("mnist")
    return (_subset(ROOT / "calibration_data" / "mnist_train.npz", 320, d / "train.npz"),
            _subset(ROOT / "calibration_data" / "mnist_val.npz", 160, d / "val.npz"))


@pytest.fixture(scope="session")
def bad_data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    src = ROOT / "calibration_data" / "mnist_train.npz"
    z = np.load(src)
    labels = z["labels"][:64].copy()
    labels[3] = 12
    np.savez(d / "empty.npz", input=np.zeros((0, 1, 28, 28), np.float32), labels=np.zeros((0,), np.int64))
    return {"labels_out_of_range": _subset(src, 64, d / "badlabels.npz", labels=labels),
            "empty": d / "empty.npz", "ok": _subset(src, 64, d / "ok.npz")}
