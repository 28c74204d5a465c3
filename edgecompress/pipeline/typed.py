"""Map a TOML table onto a frozen config dataclass, generically, through `dataclasses.fields`.

Every key must be a field (else ConfigError naming the key and listing the allowed ones); every value must fit
the field's annotation (else ConfigError naming the key, the expected type and the value). TOML arrays become
tuples for tuple fields; nested dataclass fields take sub-tables. The dataclass's own `__post_init__`
validation runs last and its ConfigError is prefixed with the table name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from ..errors import ConfigError, EdgecompressError

_NONE = type(None)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's init fields (string annotations evaluated in its module)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be evaluated: fall back to "anything"
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not _NONE]
        return " or ".join(parts) + (" (optional)" if _NONE in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list, typing.Sequence) or tp in (tuple, list):
        inner = [a for a in args if a is not Ellipsis]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans", Path: "paths"}
        return f"a list of {plural.get(inner[0], type_name(inner[0]))}" if inner else "a list"
    if origin is dict or tp is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path (string)"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


class _Mismatch(Exception):
    pass


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` (from TOML) as the annotation `tp` wants it; raises ConfigError naming `key`."""
    try:
        return _coerce(value, tp, key)
    except _Mismatch:
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {_show(value)}") from None


def _show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return tuple(value) if isinstance(value, list) else value
    if origin in (Union, types.UnionType):
        specific: ConfigError | None = None
        for alt in [a for a in args if a is not _NONE]:
            try:
                return _coerce(value, alt, key)
            except _Mismatch:
                continue
            except ConfigError as exc:  # the right kind of value, wrong inside: that message is the useful one
                specific = specific or exc
        if specific is not None:
            raise specific
        raise _Mismatch
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(f"{key}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if tp is Path or (isinstance(tp, type) and issubclass(tp, Path)):
        if isinstance(value, str) and value:
            return Path(value)
        raise _Mismatch
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce_item(v, args[0], key, i) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce_item(v, a, key, i) for i, (v, a) in enumerate(zip(value, args, strict=False)))
    if origin in (list, typing.Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        item = args[0] if args else Any
        return [_coerce_item(v, item, key, i) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return build_config(tp, value, key)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value


def _coerce_item(value: Any, tp: Any, key: str, i: int) -> Any:
    return coerce(value, tp, f"{key}[{i}]")


def build_config(cls: type, table: dict[str, Any], section: str) -> Any:
    """`cls(**table)` with every key checked against the dataclass's fields and types.

    `section` is the table's name in the recipe ("quantize", "data.image") and prefixes every error.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table, got {_show(table)}")
    types_ = field_types(cls)
    unknown = [k for k in table if k not in types_]
    if unknown:
        raise ConfigError(f"unknown key {section}.{unknown[0]} in [{section}]; allowed: "
                          f"{', '.join(types_) or '(none)'}", hint=f"`edgecompress convert --dump-recipe` shows "
                          f"every key of [{section}] with its default")
    kwargs = {k: coerce(v, types_[k], f"{section}.{k}") for k, v in table.items()}
    try:
        return cls(**kwargs)
    except EdgecompressError as exc:
        msg = exc.message
        first = msg.split(" ", 1)[0].rstrip(":,")
        if first in types_:
            msg = f"{section}.{msg}"
        elif not (msg.startswith(f"{section}.") or f"[{section}]" in msg):
            msg = f"[{section}] {msg}"
        raise ConfigError(msg, hint=exc.hint) from None
    except TypeError as exc:  # a required field without a value
        raise ConfigError(f"[{section}]: {exc}") from None


def config_defaults(cls: type) -> dict[str, Any]:
    """Field -> default value (dataclasses.MISSING where the field is required)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def changed_fields(config: Any) -> dict[str, Any]:
    """The fields of a config instance that differ from their defaults (for the plan printout)."""
    defaults = config_defaults(type(config))
    return {k: getattr(config, k) for k, d in defaults.items() if d is dataclasses.MISSING or getattr(config, k) != d}
