"""Loading and saving ONNX models with clear errors and atomic writes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper

from ..data import TensorSpec
from ..errors import ModelError, OutputError
from ..fsutil import atomic_copy, atomic_write_bytes, check_output_path, private_tempdir, require_file
from ..specs import short

MAX_PROTO = 2**31 - 1


def load_model(path: str | os.PathLike[str], *, load_external: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load and sanity-check an ONNX file; every failure is a ModelError naming the file and the cause."""
    p = require_file(path, "model")
    if p.stat().st_size == 0:
        raise ModelError(f"model {p} is empty (0 bytes)")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"model {p} is not a valid ONNX protobuf ({type(exc).__name__}: {short(exc, 300)})") from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"model {p} has an empty graph (not an ONNX model, or a truncated file)")
    if not model.opset_import:
        raise ModelError(f"model {p} declares no opset_import")
    stored_external = has_external(model)
    base = p.parent
    if stored_external and (load_external or check):
        for t in external_tensors(model):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if os.path.isabs(loc) or ".." in Path(loc).parts:
                raise ModelError(f"model {p}: external data location {loc!r} escapes the model's folder")
            if not (base / loc).is_file():
                raise ModelError(f"model {p}: external data file {loc!r} (for tensor {t.name!r}) is missing",
                                 hint="keep the .data file next to the .onnx file")
    if check and stored_external:  # by path: the checker reads the graph and checks the data files, not the data
        check_model_file(p)
    if load_external and stored_external:
        try:
            onnx.load_external_data_for_model(model, str(base))
        except (OSError, ValueError) as exc:
            raise ModelError(f"model {p}: cannot read external data ({short(exc, 300)})") from None
    if check and not stored_external:
        check_model(model, str(p))
    return model


def check_model(model: onnx.ModelProto, origin: str = "model") -> None:
    """The ONNX checker on an in-memory model; one over 2 GB is checked with its tensor data set aside (the
    checker sees the graph and every tensor's type and shape, as it does for a model with external data)."""
    try:
        if is_large(model):  # the shell by path, beside an empty stand-in for its data file (not read)
            with private_tempdir("edgecompress-check-") as tmp:
                (tmp / "set-aside").touch()
                (tmp / "model.onnx").write_bytes(_shell(model, "set-aside")[0].SerializeToString())
                onnx.checker.check_model(str(tmp / "model.onnx"))
        else:
            onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{origin} fails the ONNX checker: {short(exc, 300)}") from None


def check_model_file(path: str | os.PathLike[str]) -> None:
    """The ONNX checker on a model file (any size: its external data files are checked, not read)."""
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelError(f"model {path} fails the ONNX checker: {short(exc, 300)}") from None


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The tensors of `model` (initializers, Constant and subgraph tensors) whose data lives in external files."""
    from onnx.external_data_helper import _get_all_tensors  # noqa: PLC2701 - onnx's own helper

    return [t for t in _get_all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]


def has_external(model: onnx.ModelProto) -> bool:
    """True when some tensor of `model` keeps its data in an external file."""
    return bool(external_tensors(model))


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of tensor data held in memory by `model` (from dims and types: no tensor is serialized or copied)."""
    from onnx.external_data_helper import _get_all_tensors  # noqa: PLC2701 - onnx's own helper

    total = 0
    for t in _get_all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            total += int(np.prod(t.dims, dtype=np.int64)) * max(_np_dtype(t.data_type).itemsize, 1)
    return total


LARGE = MAX_PROTO - (64 << 20)  # tensor data above this cannot go into one protobuf with its graph


def is_large(model: onnx.ModelProto) -> bool:
    """True when `model` cannot be serialized as a single protobuf (over 2 GB): it needs external data."""
    return tensor_bytes(model) >= LARGE


EXTERNAL_THRESHOLD = 1024  # tensors of at least this many bytes go to the external data file
ALIGN = 4096


def data_file_name(dest: str | os.PathLike[str]) -> str:
    """The external data file written beside a large model at `dest`: `<model file name>.data`."""
    return f"{Path(dest).name}.data"


def _copy_fields(src, dest, skip: str) -> None:
    """Copy every set field of protobuf message `src` into `dest` but the one named `skip` (never read)."""
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if fd.is_repeated:
            getattr(dest, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(dest, fd.name).CopyFrom(value)
        else:
            setattr(dest, fd.name, value)


def _tensor_size(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims, dtype=np.int64)) * max(_np_dtype(t.data_type).itemsize, 1)


def _shell(model: onnx.ModelProto, location: str) -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """A copy of `model` whose large main-graph initializers are references to `location` (offsets aligned, in
    order), and those initializers of `model` (whose bytes go to the file in that order). Nothing of `model` is
    changed and no tensor's bytes are copied, so this costs no memory beyond the graph."""
    shell = onnx.ModelProto()
    _copy_fields(model, shell, skip="graph")
    _copy_fields(model.graph, shell.graph, skip="initializer")
    moved, offset = [], 0
    for t in model.graph.initializer:
        size = _tensor_size(t)
        nt = shell.graph.initializer.add()
        if t.data_location == onnx.TensorProto.EXTERNAL or not t.HasField("raw_data") or size < EXTERNAL_THRESHOLD:
            nt.CopyFrom(t)
            continue
        _copy_fields(t, nt, skip="raw_data")
        offset += (-offset) % ALIGN
        nt.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(size))):
            e = nt.external_data.add()
            e.key, e.value = k, v
        offset += size
        moved.append(t)
    return shell, moved


def _write_data(tensors: list[onnx.TensorProto], path: Path) -> None:
    """The bytes of `tensors`, aligned as _shell laid them out, into the file at `path` (fsynced)."""
    with open(path, "wb") as f:
        offset = 0
        for t in tensors:
            pad = (-offset) % ALIGN
            f.write(b"\0" * pad)
            data = t.raw_data  # one tensor's bytes at a time
            f.write(data)
            offset += pad + len(data)
            del data
        f.flush()
        os.fsync(f.fileno())


def infer_shapes(model: onnx.ModelProto, **kwargs) -> onnx.ModelProto:
    """onnx's shape inference (raises as it does), for a model of any size. A model over 2 GB is inferred with its
    tensor data set aside and gets the inferred shapes itself (it is returned: no 2 GB copy is made)."""
    if not is_large(model):
        return onnx.shape_inference.infer_shapes(model, **kwargs)
    inferred = onnx.shape_inference.infer_shapes(_shell(model, "set-aside")[0], **kwargs)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    for mine, theirs in zip(model.graph.output, inferred.graph.output, strict=True):
        mine.CopyFrom(theirs)
    return model


def save_model(model: onnx.ModelProto, dest: str | os.PathLike[str], *, external: bool | None = None) -> Path:
    """Write `model` to `dest` atomically. A model over 2 GB (or any, with external=True) is written as `dest`
    plus its tensor data in `<dest name>.data` beside it: both are built in a temp folder beside `dest` and moved
    into place together (the old model file is removed first, so no model ever reads another write's data)."""
    if external is None:
        external = is_large(model)
    if not external:
        data = model.SerializeToString()
        if len(data) >= MAX_PROTO:
            return save_model(model, dest, external=True)
        return atomic_write_bytes(dest, data)
    dest = check_output_path(dest)
    name = data_file_name(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        shell, moved = _shell(model, name)
        _write_data(moved, tmp / name)
        with open(tmp / dest.name, "wb") as f:
            f.write(shell.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        for p in (tmp / name, tmp / dest.name):
            os.chmod(p, 0o644)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(tmp / name, dest.parent / name)
        os.replace(tmp / dest.name, dest)
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def model_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the model file at `path` and its external data files together."""
    return sum(f.stat().st_size for f in model_files(path) if f.is_file())


def model_size_mb(path: str | os.PathLike[str]) -> float:
    """Size of a model in MB, its external data files included."""
    return model_bytes(path) / 1e6


def copy_model(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy the model at `src` to `dest` atomically: a single file as it is; one with external data loaded and
    written again (save_model: one file when it fits in 2 GB, else `dest` plus `<dest name>.data`)."""
    if len(model_files(src)) == 1:
        return atomic_copy(src, dest)
    return save_model(load_model(src, check=False), dest)


def model_files(path: str | os.PathLike[str]) -> list[Path]:
    """The model file at `path` and the external data files it references (relative to its folder), in order."""
    p = Path(path)
    proto = onnx.load(str(p), load_external_data=False)
    locs = sorted({e.value for t in external_tensors(proto) for e in t.external_data if e.key == "location"})
    return [p] + [p.parent / loc for loc in locs]


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return ()
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _np_dtype(elem_type: int) -> np.dtype:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype(object)


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Graph inputs that are real inputs (not initializers)."""
    inits = {i.name for i in model.graph.initializer}
    return [TensorSpec(vi.name, _dims(vi), _np_dtype(vi.type.tensor_type.elem_type))
            for vi in model.graph.input if vi.name not in inits]


def output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [TensorSpec(vi.name, _dims(vi), _np_dtype(vi.type.tensor_type.elem_type)) for vi in model.graph.output]


def opset_version(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0
