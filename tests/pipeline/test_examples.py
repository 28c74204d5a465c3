"""The example recipes in examples/ run end to end (as shipped) and give verified releases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecompress.pipeline import convert, load_recipe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"image_classifier.toml", "text_encoder.toml"}


@pytest.mark.parametrize("name", ["image_classifier.toml", "text_encoder.toml"])
def test_example_recipe_runs(tmp_path, name):
    recipe = load_recipe(ROOT / "examples" / name)
    out = tmp_path / "out"
    result = convert(recipe, out=out)
    assert result.verify and result.verify["ok"]
    manifest = json.loads((out / "release" / "manifest.json").read_text())
    assert manifest["name"] == recipe.config("package").name
    stages = [row["stage"] for row in result.summary]
    assert stages[-1] == "quantize" and "export" in stages and "prune" in stages
    rows = {row["stage"]: row for row in result.summary}
    assert rows["quantize"]["p50_ms"] is not None and rows["export"]["p50_ms"] is not None  # benched
    assert all(row["size_bytes"] for row in result.summary)
    if name == "image_classifier.toml":
        assert rows["quantize"]["accuracy"] is not None and rows["quantize"]["accuracy"] > 0.5
