"""Session-scoped good inputs for the reliability suite (built once, shared read-only by every run)."""

from __future__ import annotations

import pytest

from .fixtures import World, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("reliability"))
