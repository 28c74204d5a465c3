"""Canonical re-serialization of ORT format (`.ort`) flatbuffers.

ONNX Runtime writes ORT format models whose *logical* content is deterministic but whose byte layout is not:
some tables (e.g. the kernel type string resolver's sorted entries) are created while iterating hash maps whose
order changes from one session to the next, so converting the same ONNX model twice gives different bytes.
A release must be byte-reproducible, so the `.ort` file is read back and rebuilt here in one fixed order
(depth-first, fields in schema order). The result holds the same values and loads in ONNX Runtime like the
original (the package stage checks that numerically).

The schema is taken from ONNX Runtime's own generated Python flatbuffers classes
(`onnxruntime/tools/ort_format_model/ort_flatbuffers_py/fbs`), so it follows the installed ORT version.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_IDENTIFIER = b"ORTM"
_PKG = "ort_flatbuffers_py.fbs"

_OFFSET = re.compile(r"self\._tab\.Offset\((\d+)\)")
_FLAGS = re.compile(r"flatbuffers\.number_types\.(\w+)Flags")
_IMPORT = re.compile(r"from ort_flatbuffers_py\.fbs\.(\w+) import")
_STRIDE = re.compile(r"\) \* (\d+)")
# union member names whose table class is named differently (schema: `union TypeInfoValue { tensor_type:TensorTypeAndShape, ...}`)
_UNION_CLASS = {"TensorType": "TensorTypeAndShape"}
_SKIP_SUFFIX = ("Length", "IsNone", "AsNumpy", "BufferHasIdentifier")


@dataclass(frozen=True)
class Field:
    name: str
    slot: int
    kind: str  # scalar | string | table | struct | union | vec_scalar | vec_string | vec_table | vec_struct
    scalar: str = ""  # flatbuffers number type name, e.g. Int64
    ref: str = ""  # table/struct class name
    stride: int = 0


def _ensure_fbs_on_path() -> None:
    from .ortools import tool

    ofm = tool("ort_format_model")
    if ofm.__file__ is None:  # a regular package of onnxruntime.tools always has a file
        raise ImportError("onnxruntime.tools.ort_format_model has no __file__")
    root = str(Path(ofm.__file__).parent)
    if root not in sys.path:
        sys.path.append(root)


@functools.cache
def _cls(name: str) -> Any:  # a generated flatbuffers accessor class
    _ensure_fbs_on_path()
    return getattr(importlib.import_module(f"{_PKG}.{name}"), name)


@functools.cache
def schema(name: str) -> tuple[Field, ...]:
    """Fields of table `name`, read from the generated accessor code."""
    cls = _cls(name)
    fields = []
    for attr, fn in vars(cls).items():
        if not inspect.isfunction(fn) or attr == "Init" or attr.startswith("GetRootAs") or attr.endswith(_SKIP_SUFFIX):
            continue
        src = inspect.getsource(fn)
        m = _OFFSET.search(src)
        if not m:
            continue
        slot = (int(m.group(1)) - 4) // 2
        imp = _IMPORT.search(src)
        flags = [f for f in _FLAGS.findall(src) if f not in ("UOffsetT",)]
        if "self._tab.Vector(o)" in src:
            if imp and "Indirect" in src:
                fields.append(Field(attr, slot, "vec_table", ref=imp.group(1)))
            elif imp:
                sm = _STRIDE.search(src)  # a struct vector's accessor always multiplies by the struct size
                if sm is None:
                    raise ValueError(f"no struct stride in the generated accessor {name}.{attr}")
                stride = int(sm.group(1))
                fields.append(Field(attr, slot, "vec_struct", ref=imp.group(1), stride=stride))
            elif "self._tab.String(" in src:
                fields.append(Field(attr, slot, "vec_string"))
            else:
                fields.append(Field(attr, slot, "vec_scalar", scalar=flags[0]))
        elif "self._tab.Union(" in src:
            fields.append(Field(attr, slot, "union"))
        elif imp and "Indirect" in src:
            fields.append(Field(attr, slot, "table", ref=imp.group(1)))
        elif imp:
            fields.append(Field(attr, slot, "struct", ref=imp.group(1)))
        elif "self._tab.String(" in src:
            fields.append(Field(attr, slot, "string"))
        else:
            fields.append(Field(attr, slot, "scalar", scalar=flags[0]))
    return tuple(sorted(fields, key=lambda f: f.slot))


@functools.cache
def _num_slots(name: str) -> int:
    mod = importlib.import_module(f"{_PKG}.{name}")
    m = re.search(r"StartObject\((\d+)\)", inspect.getsource(mod))
    return int(m.group(1)) if m else len(schema(name))


@functools.cache
def _union_members(table: str, field: str) -> dict[int, str]:
    """value -> table class of a union field (the enum class is named <Table><Field>)."""
    enum = _cls(f"{table}{field}")
    members = {}
    for key, value in vars(enum).items():
        if key.startswith("_") or key == "NONE" or not isinstance(value, int):
            continue
        cls_name = "".join(p[:1].upper() + p[1:] for p in key.split("_"))
        members[value] = _UNION_CLASS.get(cls_name, cls_name)
    return members


def _struct_size(name: str) -> int:
    return int(_cls(name).SizeOf())


# ---------------------------------------------------------------------------------------------- reading


def _read_table(tab: Any, name: str) -> dict[int, Any]:
    """{slot: value} for every field present in the buffer (absent fields stay absent)."""
    import flatbuffers
    from flatbuffers import number_types as nt

    out: dict[int, Any] = {}
    for f in schema(name):
        o = tab.Offset(4 + 2 * f.slot)
        if o == 0:
            continue
        if f.kind == "scalar":
            out[f.slot] = tab.Get(getattr(nt, f"{f.scalar}Flags"), o + tab.Pos)
        elif f.kind == "string":
            out[f.slot] = bytes(tab.String(o + tab.Pos))
        elif f.kind == "table":
            out[f.slot] = _read_table(flatbuffers.table.Table(tab.Bytes, tab.Indirect(o + tab.Pos)), f.ref)
        elif f.kind == "struct":
            pos = o + tab.Pos
            out[f.slot] = bytes(tab.Bytes[pos:pos + _struct_size(f.ref)])
        elif f.kind == "union":
            type_field = next(x for x in schema(name) if x.name == f"{f.name}Type")
            utype = out.get(type_field.slot, 0)
            if utype:
                sub = flatbuffers.table.Table(bytearray(), 0)
                tab.Union(sub, o)
                out[f.slot] = (_union_members(name, f.name)[utype], _read_table(sub, _union_members(name, f.name)[utype]))
        else:
            start, n = tab.Vector(o), tab.VectorLen(o)
            if f.kind == "vec_scalar":
                flags = getattr(nt, f"{f.scalar}Flags")
                out[f.slot] = bytes(tab.Bytes[start:start + n * flags.bytewidth])
            elif f.kind == "vec_string":
                out[f.slot] = [bytes(tab.String(start + 4 * j)) for j in range(n)]
            elif f.kind == "vec_table":
                out[f.slot] = [_read_table(flatbuffers.table.Table(tab.Bytes, tab.Indirect(start + 4 * j)), f.ref)
                               for j in range(n)]
            else:  # vec_struct
                out[f.slot] = [bytes(tab.Bytes[start + f.stride * j:start + f.stride * (j + 1)]) for j in range(n)]
    return out


# ---------------------------------------------------------------------------------------------- writing


def _write_table(b: Any, name: str, values: dict[int, Any]) -> int:
    from flatbuffers import number_types as nt

    fields = {f.slot: f for f in schema(name)}
    refs: dict[int, int] = {}
    # children first, in slot order (this fixed order is what makes the bytes canonical)
    for slot in sorted(values):
        f, v = fields[slot], values[slot]
        if f.kind == "string":
            refs[slot] = b.CreateString(v)
        elif f.kind == "table":
            refs[slot] = _write_table(b, f.ref, v)
        elif f.kind == "union":
            refs[slot] = _write_table(b, v[0], v[1])
        elif f.kind == "vec_scalar":
            flags = getattr(nt, f"{f.scalar}Flags")
            n = len(v) // flags.bytewidth
            align = 16 if flags.bytewidth == 1 and n > 16 else flags.bytewidth
            b.StartVector(flags.bytewidth, n, align)
            b.head = b.head - len(v)
            b.Bytes[b.head:b.head + len(v)] = v
            refs[slot] = b.EndVector()
        elif f.kind == "vec_string":
            offs = [b.CreateString(s) for s in v]
            refs[slot] = _offset_vector(b, offs)
        elif f.kind == "vec_table":
            offs = [_write_table(b, f.ref, t) for t in v]
            refs[slot] = _offset_vector(b, offs)
        elif f.kind == "vec_struct":
            b.StartVector(f.stride, len(v), 4)
            for raw in reversed(v):
                b.head = b.head - len(raw)
                b.Bytes[b.head:b.head + len(raw)] = raw
            refs[slot] = b.EndVector()
    b.StartObject(_num_slots(name))
    for slot in sorted(values):
        f, v = fields[slot], values[slot]
        if f.kind == "scalar":
            getattr(b, f"Prepend{f.scalar}Slot")(slot, v, None)
        elif f.kind == "struct":
            b.Prep(4, len(v))
            b.head = b.head - len(v)
            b.Bytes[b.head:b.head + len(v)] = v
            b.Slot(slot)
        else:
            b.PrependUOffsetTRelativeSlot(slot, refs[slot], 0)
    return b.EndObject()


def _offset_vector(b: Any, offs: list[int]) -> int:
    b.StartVector(4, len(offs), 4)
    for off in reversed(offs):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def read_ort(data: bytes) -> dict[int, Any]:
    """The logical content of an ORT format model (nested {slot: value})."""
    import flatbuffers

    buf = bytearray(data)
    if len(buf) < 8 or bytes(buf[4:8]) != FILE_IDENTIFIER:
        raise ValueError("not an ORT format model (missing the 'ORTM' file identifier)")
    root = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)
    return _read_table(flatbuffers.table.Table(buf, root), "InferenceSession")


def canonicalize(data: bytes) -> bytes:
    """Re-serialize an ORT format model in a fixed order: same content, reproducible bytes."""
    import flatbuffers

    content = read_ort(data)
    b = flatbuffers.Builder(len(data) + 1024)
    b.ForceDefaults(True)  # keep every field that was present, even at its default value
    root = _write_table(b, "InferenceSession", content)
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
