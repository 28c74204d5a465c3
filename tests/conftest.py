"""Shared test setup: repo root on sys.path (for `examples.*`), data paths, tiny model helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "calibration_data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def _no_litter_in_repo(request):
    """Fail a test that leaves new files in the repository root (outputs belong in tmp_path)."""
    before = {p.name for p in ROOT.iterdir()}
    yield
    after = {p.name for p in ROOT.iterdir()}
    new = sorted(after - before - {".pytest_cache", ".ruff_cache", ".hypothesis"})
    assert not new, f"test left files in the repository root: {new}"


@pytest.fixture(scope="session")
def train_on_digits():
    """train_on_digits(model, epochs) -> the model trained (Adam, cross-entropy) on calibration_data's real digits
    train split; seeded, a few seconds on CPU."""
    def train(model, epochs: int = 10):
        import numpy as np
        import torch

        torch.manual_seed(0)
        d = np.load(DATA / "digits_train.npz")
        x, y = torch.from_numpy(d["input"]), torch.from_numpy(d["labels"])
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(epochs):
            for i in torch.randperm(len(x)).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
                opt.step()
        return model.eval()

    return train


@pytest.fixture(scope="session")
def lowbit_models(tmp_path_factory) -> dict[str, Path]:
    """Weight-only low-bit (MatMulNBits / GatherBlockQuantized) and fp16 models with their fp32 sources, plus feed
    files "mlp_data" / "embed_data" (.npz): tests/lowbit_helpers.py."""
    import numpy as np
    from lowbit_helpers import embed_feeds, mlp_feeds, write_models

    folder = tmp_path_factory.mktemp("lowbit")
    paths = write_models(folder)
    np.savez(folder / "mlp.npz", **mlp_feeds(4))
    np.savez(folder / "embed.npz", **embed_feeds(4))
    return {**paths, "mlp_data": folder / "mlp.npz", "embed_data": folder / "embed.npz"}
