"""Fixtures for the prune tests."""

from __future__ import annotations

import onnx
import pytest
from prune_helpers import export_model


@pytest.fixture
def exported(tmp_path):
    """exported(model, shape, **kw) -> path of the .onnx in tmp_path."""
    counter = [0]

    def make(model, shape, **kw):
        counter[0] += 1
        path = tmp_path / f"m{counter[0]}.onnx"
        proto = export_model(model, shape, path=path, **kw)
        onnx.save(proto, str(path))
        return path

    return make
