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
