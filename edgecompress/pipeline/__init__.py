"""convert: the whole chain from one recipe, resumable (see docs/convert.md).

    from edgecompress.pipeline import convert
    result = convert("examples/image_classifier.toml", out="out/")    # or convert() for the built-in demo
    result.release, result.summary

Modules: registry (stages in order, their config classes), typed (TOML table -> frozen config), recipe (the
recipe file -> Recipe), dump (--dump-recipe), cache (content-hash stage folders), steps (one adapter per stage),
run (orchestration), summary, train (the [train] step), demo (the built-in recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._api import lazy_exports

if TYPE_CHECKING:  # the package stays light: `convert --help` imports only the registry
    from .recipe import Recipe
    from .run import ConvertResult, Progress

DEFAULT_OUT = "edgecompress-out"

__all__ = ["convert", "load", "Recipe", "ConvertResult", "load_recipe", "parse_recipe", "plan", "STAGE_NAMES",
           "DEFAULT_OUT"]

lazy_exports(__name__, {"Recipe": "recipe", "load_recipe": "recipe", "parse_recipe": "recipe",
                        "STAGE_NAMES": "registry", "ConvertResult": "run", "Progress": "run", "plan": "run",
                        "run_recipe": "run"})


def load(recipe: str | Path | None = None, *, target: str | None = None) -> Recipe:
    """A recipe file, or the built-in demo when `recipe` is None; `target` overrides the recipe's."""
    if recipe is None:
        from .demo import demo_recipe

        return demo_recipe(target)
    from .recipe import load_recipe

    return load_recipe(recipe, target=target)


def convert(recipe: str | Path | Recipe | None = None, *, target: str | None = None,
            out: str | Path = DEFAULT_OUT, from_stage: str | None = None,
            progress: Progress | None = None) -> ConvertResult:
    """Run the chain. Stages already completed under `out` with the same inputs and config are reused."""
    from .recipe import Recipe
    from .run import run_recipe

    r = recipe if isinstance(recipe, Recipe) else load(recipe, target=target)
    return run_recipe(r, out, from_stage=from_stage, progress=progress)
