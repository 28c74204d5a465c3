"""`convert --dump-recipe`: a fully commented recipe with every key and its default, generated from the configs.

Comments come from each field's `metadata["help"]` when a stage sets it, else from the trailing `# comment` on
the field's line in the dataclass source, else from the field's type. The result parses back into a Recipe.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

from .. import __version__
from .recipe import DataSection, ModelSection
from .registry import STAGES, config_class
from .steps import STEPS
from .typed import config_defaults, field_types, type_name

_TRAILING = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")
_DOC_ITEM = re.compile(r"^(\w+(?:\s*/\s*\w+)*):\s+(.+)$")


def field_comments(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        src = ""
    for line in src.splitlines():
        m = _TRAILING.match(line)
        if m:
            out.setdefault(m.group(1), m.group(2).strip())
    names = {f.name for f in dataclasses.fields(cls)}
    current: list[str] = []
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        m = _DOC_ITEM.match(line)
        keys = [k.strip() for k in m.group(1).split("/")] if m else []
        if keys and all(k in names for k in keys):
            current = keys
            for k in keys:
                out.setdefault(k, m.group(2).strip())  # type: ignore[union-attr]
        elif current and line.startswith((" ", "\t")) and line.strip():
            for k in current:
                out[k] = f"{out[k]} {line.strip()}"
        else:
            current = []
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") if f.metadata else None
        if text:
            out[f.name] = str(text)
    return out


def toml_value(v: Any) -> str | None:
    """TOML literal for a default; None when TOML cannot express it (None -> the key is commented out)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        items = [toml_value(x) for x in v]
        lits = [i for i in items if i is not None]
        return None if len(lits) != len(items) else "[" + ", ".join(lits) + "]"
    if isinstance(v, dict):
        pairs = [(k, toml_value(x)) for k, x in v.items()]
        if any(i is None for _, i in pairs):
            return None
        return "{" + ", ".join(f"{json.dumps(str(k))} = {i}" for k, i in pairs) + "}"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return toml_value(dataclasses.asdict(v))
    return json.dumps(str(v))


def table_lines(cls: type, section: str, values: dict[str, Any] | None = None,
                filled: dict[str, str] | None = None) -> list[str]:
    """`key = default  # comment` for every field of `cls` (values overrides the defaults shown)."""
    lines: list[str] = []
    comments = field_comments(cls)
    types_ = field_types(cls)
    defaults = config_defaults(cls)
    nested: list[tuple[str, type, Any]] = []
    for name, default in defaults.items():
        value = (values or {}).get(name, default)
        tp = types_.get(name)
        note = comments.get(name, "")
        kind = type_name(tp) if tp is not None else ""
        sub = _nested_dataclass(tp)
        if sub is not None:
            nested.append((name, sub, value))
            continue
        lines += _wrap(f"{name}: {kind}" + (f". {note}" if note else ""))
        if filled and name in filled:
            lines.append(f"# {name} = ...   (when left out, convert takes {filled[name]})")
            continue
        if value is dataclasses.MISSING:
            lines.append(f"# {name} = ...   (REQUIRED)")
            continue
        lit = toml_value(value)
        lines.append(f"# {name} = (unset by default)" if lit is None else f"{name} = {lit}")
    for name, sub, value in nested:
        lines.append("")
        lines.append(f"# [{section}.{name}] is optional; these are its defaults")
        body = table_lines(sub, f"{section}.{name}",
                           dataclasses.asdict(value)
                           if dataclasses.is_dataclass(value) and not isinstance(value, type) else None)
        if value is None:
            lines.append(f"# [{section}.{name}]")
            lines += ["# " + b if b and not b.startswith("#") else b for b in body]
        else:
            lines.append(f"[{section}.{name}]")
            lines += body
    return lines


def _wrap(text: str, width: int = 110) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width - 2)] or ["#"]


def _nested_dataclass(tp: Any) -> type | None:
    import typing

    if tp is None:
        return None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for a in typing.get_args(tp):
        if isinstance(a, type) and dataclasses.is_dataclass(a):
            return a
    return None


def dump_recipe(model: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                target: str = "host", examples: dict[str, dict[str, Any]] | None = None) -> str:
    """The full recipe text. `model`/`data` fill [model]/[data] (the demo's, so the dump runs as is);
    `examples[stage]` fills the fields that have no default (required, or unset where the stage needs one
    of several), so the dump parses back into a valid recipe."""
    out = [
        f"# edgecompress recipe (edgecompress {__version__}): every key with its default.",
        "# Run it with `edgecompress convert THIS.toml`. Relative paths are relative to this file's folder.",
        "# A stage runs when its table is present: delete a [stage] table to skip that stage",
        "# ([export], or an .onnx model.source, and [package] are required).",
        "",
        f"target = {json.dumps(target)}  # a profile name (`edgecompress targets`), a .toml path, or host; "
        "--target overrides",
        "",
        "# The model: a PyTorch factory 'file.py:function' / 'package.module:function' (+ optional state-dict",
        "# weights), a .pt2 program, or an .onnx model (then only prune / quantize / bench / package apply).",
        "[model]",
    ]
    out += table_lines(ModelSection, "model", model)
    out += ["", "# Feed data: a .npz (keys = input names, optional 'labels'), a folder of .npz or images, or",
            "# module:function. train/val feed [train] and [distill], calibration feeds [prune] and [quantize],",
            "# eval measures accuracy (never used for training or calibration).", "[data]"]
    out += table_lines(DataSection, "data", data)
    for spec in STAGES:
        cls = config_class(spec.name)
        out += ["", f"# [{spec.name}]: {spec.help}", f"[{spec.name}]"]
        defaults = config_defaults(cls)
        fill = {k: v for k, v in (examples or {}).get(spec.name, {}).items()
                if defaults.get(k, dataclasses.MISSING) in (None, dataclasses.MISSING)}
        if fill:
            out.append(f"# (no default for {', '.join(fill)}: the demo's value is shown)")
        out += table_lines(cls, spec.name, fill, STEPS[spec.name].filled)
    return "\n".join(out) + "\n"
