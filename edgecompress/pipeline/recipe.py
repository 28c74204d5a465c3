"""Recipe (TOML) -> typed, validated `Recipe`.

    target = "host"                          # optional; --target overrides
    [model]  source = "examples/mnist_models.py:teacher"  weights = "teacher.pt"   (or source = "model.onnx")
    [data]   train / val / calibration / eval = data specs (see edgecompress.data); [data.image] preprocessing
    [train] [distill] [export] [prune] [quantize] [bench] [package]    one table per stage, keys = config fields

A stage runs when its table is present (an empty table takes every default). Relative paths are relative to the
recipe's folder. Everything is checked before any work: unknown keys, types, files, the target.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import ImageSpec
from ..errors import ConfigError, InputError
from ..targets import TargetProfile, get_target
from .registry import STAGE_NAMES, config_class
from .steps import STEPS
from .typed import build_config, field_types

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA_KEYS = ("train", "val", "calibration", "eval")
TORCH_STAGES = ("train", "distill", "export")
_FILE_FIELDS = ("weights", "_path", "_file")  # str fields naming an input file: resolved and checked
# (unless the config lists the field in its NOT_FILES, as [quantize] weights = "int4", a format)


@dataclass(frozen=True)
class ModelSection:
    """[model]: what goes into the pipeline."""

    source: str = ""  # file.py:function | package.module:function | a .pt2 | an .onnx (required)
    weights: str = ""  # a state dict (or a checkpoint with 'state_dict') for a PyTorch factory; optional

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ConfigError("model.source is required: a PyTorch factory 'file.py:function' or "
                              "'package.module:function', a .pt2 program, or an .onnx model")

    @property
    def kind(self) -> str:
        s = self.source.lower()
        if s.endswith(".onnx"):
            return "onnx"
        if s.endswith(".pt2"):
            return "pt2"
        return "torch"


@dataclass(frozen=True)
class DataSection:
    """[data]: feed data for the stages (each a .npz, a folder of .npz or images, or module:function)."""

    train: str = ""  # labelled training data for [train] and [distill]
    val: str = ""  # validation data for [train] and [distill] (distill splits data.train without it)
    calibration: str = ""  # for export's parity check, [prune]'s reconstruction, [quantize]'s calibration
    eval: str = ""  # held-out data: accuracy in [prune], [quantize], [bench], [package] and the summary
    image: ImageSpec | None = None  # preprocessing when a data entry is a folder of images


@dataclass(frozen=True)
class Recipe:
    model: ModelSection
    data: DataSection
    target: TargetProfile
    target_spec: str
    stages: tuple[tuple[str, Any], ...]
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.stages)

    def config(self, name: str) -> Any:
        return dict(self.stages).get(name)

    def data_spec(self, key: str) -> str:
        return getattr(self.data, key)


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"recipe not found: {p}" if not p.exists() else f"recipe is not a file: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"recipe {p}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {p}: malformed TOML: {exc}") from None


def load_recipe(path: str | Path, *, target: str | None = None) -> Recipe:
    p = Path(path)
    return parse_recipe(read_toml(p), base_dir=p.resolve().parent, path=p, target=target)


def parse_recipe(data: dict[str, Any], *, base_dir: Path, path: Path | None = None,
                 target: str | None = None) -> Recipe:
    """Validate a parsed recipe. `target` (the --target flag) overrides the recipe's `target`."""
    allowed = ("target", "model", "data") + STAGE_NAMES
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} at the top of the recipe; allowed: {', '.join(allowed)}",
                          hint="`edgecompress convert --dump-recipe` writes a recipe with every key")
    for key in ("model", "data") + STAGE_NAMES:
        if key in data and not isinstance(data[key], dict):
            raise ConfigError(f"{key} must be a table ([{key}]), got {type(data[key]).__name__} {data[key]!r}")
    if "target" in data and not isinstance(data["target"], str):
        raise ConfigError(f"target: expected a string (a profile name or a .toml path), got {data['target']!r}")
    if "model" not in data:
        raise ConfigError("the recipe has no [model] table; it needs model.source")

    model = build_config(ModelSection, data["model"], "model")
    model = dataclasses.replace(model, source=_resolve_source(model.source, base_dir, "model.source"),
                                weights=_resolve_file(model.weights, base_dir, "model.weights"))
    data_sec = build_config(DataSection, data.get("data", {}), "data")
    data_sec = dataclasses.replace(data_sec, **{k: _resolve_data(getattr(data_sec, k), base_dir, f"data.{k}")
                                                 for k in DATA_KEYS})

    stages: list[tuple[str, Any]] = []
    for name in STAGE_NAMES:
        if name in data:
            table = STEPS[name].prefill(data[name], model)
            cfg = build_config(config_class(name), table, name)
            stages.append((name, _resolve_config_paths(cfg, base_dir, name)))
    recipe_target = data.get("target")
    spec = target if target is not None else recipe_target
    if spec is not None and target is None and (spec.endswith(".toml") or "/" in spec):
        spec = str(_abs(spec, base_dir))
    profile = get_target(spec)
    recipe = Recipe(model=model, data=data_sec, target=profile, target_spec=spec or "host", stages=tuple(stages),
                    path=path, base_dir=base_dir)
    check_plan(recipe)
    return recipe


def check_plan(recipe: Recipe) -> None:
    """Stage combinations and the data each stage needs."""
    names = recipe.stage_names
    kind = recipe.model.kind
    if kind == "onnx":
        bad = [n for n in TORCH_STAGES if n in names]
        if bad:
            raise ConfigError(f"[{bad[0]}] needs a PyTorch model, but model.source is an ONNX file "
                              f"({recipe.model.source}); drop [{bad[0]}] or give a PyTorch factory")
    elif "export" not in names:
        raise ConfigError("a PyTorch model.source needs an [export] table (an empty one takes the defaults)")
    if "package" not in names:
        raise ConfigError("the recipe has no [package] table; every recipe ends with a release "
                          "(an empty [package] takes the defaults)")
    if recipe.model.weights and kind != "torch":
        raise ConfigError("model.weights applies to a PyTorch factory only")
    needs = {"train": ("train",), "distill": ("train",), "quantize": ("calibration",)}
    for stage, keys in needs.items():
        for key in keys:
            if stage in names and not recipe.data_spec(key):
                raise ConfigError(f"[{stage}] needs data.{key} (set it in [data])")


def _abs(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base_dir / p


def _resolve_file(value: str, base_dir: Path, key: str) -> str:
    if not value:
        return value
    p = _abs(value, base_dir)
    if not p.is_file():
        raise InputError(f"{key}: file not found: {p}" if not p.exists() else f"{key}: not a file: {p}")
    return str(p)


def _resolve_source(value: str, base_dir: Path, key: str) -> str:
    """A file model (.onnx/.pt2/.py:fn) is made absolute and must exist; `package.module:fn` is left as is."""
    if ":" in value and not value.lower().endswith((".onnx", ".pt2")):
        file_part, _, attr = value.rpartition(":")
        if not attr.isidentifier():
            raise ConfigError(f"{key}: {value!r}: expected 'file.py:function' or 'package.module:function'")
        if file_part.endswith(".py"):
            return f"{_resolve_file(file_part, base_dir, key)}:{attr}"
        return value
    if value.lower().endswith((".onnx", ".pt2")):
        return _resolve_file(value, base_dir, key)
    raise ConfigError(f"{key}: {value!r}: expected 'file.py:function', 'package.module:function', a .pt2 or an .onnx")


def _resolve_data(value: str, base_dir: Path, key: str) -> str:
    if not value:
        return value
    p = _abs(value, base_dir)
    if p.exists():
        return str(p)
    file_part, sep, attr = value.rpartition(":")
    if sep and attr.isidentifier():
        if file_part.endswith(".py"):
            return f"{_resolve_file(file_part, base_dir, key)}:{attr}"
        if not ("/" in file_part or "\\" in file_part):
            return value  # package.module:function
    raise InputError(f"{key}: file not found: {p}")


def _resolve_config_paths(cfg: Any, base_dir: Path, section: str) -> Any:
    """Fields that name input files (Path-typed, or 'file.py:function' strings) are resolved and must exist."""
    changes: dict[str, Any] = {}
    not_files = getattr(type(cfg), "NOT_FILES", ())
    for name, _tp in field_types(type(cfg)).items():
        value = getattr(cfg, name)
        if name in not_files:
            continue
        if isinstance(value, Path) and name not in ("out", "output", "output_dir"):
            changes[name] = Path(_resolve_file(str(value), base_dir, f"{section}.{name}"))
        elif isinstance(value, str) and value and name.endswith(_FILE_FIELDS):
            changes[name] = _resolve_file(value, base_dir, f"{section}.{name}")
        elif isinstance(value, str) and ":" in value and value.rpartition(":")[0].endswith(".py"):
            changes[name] = _resolve_source(value, base_dir, f"{section}.{name}")
    if not changes or all(getattr(cfg, k) == v for k, v in changes.items()):
        return cfg
    return dataclasses.replace(cfg, **changes)
