"""Where the PyTorch model comes from: a factory (`path/file.py:factory`, `pkg.mod:factory`), a saved
ExportedProgram (`.pt2`), or a distill checkpoint (`.pt` dict with 'state_dict' and 'definition'); plus weights.

Every problem is a ModelError (exit 2) with one line naming it. Weights are read with
`torch.load(weights_only=True)`: a file that pickles code is refused, never executed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..specs import import_callable
from ..specs import short as _short


def load_factory(spec: str, what: str = "model"):
    """Build the nn.Module returned by `path/file.py:factory` or `package.module:factory`."""
    from torch import nn

    mod_name, _, attr = str(spec).rpartition(":")
    if not mod_name or not attr or not attr.isidentifier():
        raise ModelError(f"{what} {spec!r}: expected path/file.py:factory, package.module:factory or a .pt2 file")
    fn = import_callable(spec, what, error=ModelError, noun="factory")
    try:
        model = fn()
    except Exception as exc:  # user code
        raise ModelError(f"{what} {spec!r}: factory raised {type(exc).__name__}: {_short(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{what} {spec!r}: factory returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _torch_load(path: Path, what: str) -> Any:
    import pickle

    import torch

    if not path.is_file():
        raise ModelError(f"{what} file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelError(f"{what} {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = _short(exc, 400)
        if "Weights only load failed" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise ModelError(f"{what} {path} pickles Python objects or code, which is refused "
                             "(torch.load(weights_only=True)); save a plain state_dict instead",
                             hint="torch.save(model.state_dict(), path)") from None
        raise ModelError(f"{what} {path}: not a readable torch file (UnpicklingError: {_short(exc)})") from None
    except Exception as exc:  # zip/EOF/runtime errors of a corrupt file
        raise ModelError(f"{what} {path}: not a readable torch file ({type(exc).__name__}: {_short(exc)})") from None


def read_state_dict(path: str | os.PathLike[str], what: str = "weights") -> dict[str, Any]:
    """A state_dict from a plain state_dict file or a checkpoint dict with 'state_dict' or 'model'."""
    p = Path(path)
    return _state_dict_of(_torch_load(p, what), p, what)


def _state_dict_of(obj: Any, p: Path, what: str) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{what} {p}: expected a state_dict (name -> tensor) or a checkpoint dict with a "
                         "'state_dict' or 'model' key")
    return obj


def load_weights(model, path: str | os.PathLike[str], what: str = "weights",
                 loaded: dict[str, Any] | None = None) -> None:
    """Load the state_dict in `path` (or `loaded`, the object already read from it) into `model`, checked."""
    sd = read_state_dict(path, what) if loaded is None else _state_dict_of(loaded, Path(path), what)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    bad = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
        if bad:
            k = bad[0]
            parts.append(f"shape of {k}: file {list(sd[k].shape)} vs model {list(own[k].shape)}")
        raise ModelError(f"{what} {path} do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(sd)


def load_program(path: Path):
    """A saved torch.export ExportedProgram (.pt2)."""
    import torch

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # corrupt archive, version mismatch
        raise ModelError(f"model {path}: not a loadable ExportedProgram ({type(exc).__name__}: {_short(exc)})") from None


def program_inputs(ep) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, example shape, dtype) of a program's user inputs, from the fake tensors it recorded."""
    out = []
    user = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                raise ModelError(f"program input {node.name!r} has no recorded tensor shape; pass --input")
            shape = tuple(int(d) if str(d).isdigit() else 2 for d in val.shape)
            out.append((node.name, shape, str(val.dtype).replace("torch.", "")))
    return out


def load_source(model: str, weights: str | None = None):
    """(nn.Module or ExportedProgram, kind, input names from a checkpoint or None)."""
    s = str(model)
    p = Path(s)
    if p.suffix == ".pt2" and ":" not in p.name:
        if weights:
            raise ModelError("--weights does not apply to a .pt2 ExportedProgram (its weights are inside it)")
        return load_program(p), "pt2", None
    if p.suffix in (".pt", ".pth", ".ckpt") and ":" not in p.name:
        return _load_checkpoint(p, weights)
    if ":" not in s:
        if p.exists():
            raise ModelError(f"model {p}: unsupported file type {p.suffix or '(none)'}; expected "
                             "path/file.py:factory, package.module:factory, a .pt2 ExportedProgram or a distill "
                             "checkpoint (.pt)")
        raise ModelError(f"model {s!r}: expected path/file.py:factory, package.module:factory or a .pt2 file")
    module = load_factory(s)
    if weights:
        load_weights(module, weights)
    return module, "factory", None


def student_from_checkpoint(ckpt: dict[str, Any]):
    """The student nn.Module of a distill checkpoint dict already read (see edgecompress.distill.models).

    A derived student is rebuilt from its teacher factory and the plan stored under 'derived'
    (edgecompress.distill.students, which needs torch); a SPEC student from its 'definition'.
    """
    derived = ckpt.get("derived")
    if derived:
        from ..distill.students import rebuild_derived  # torch-only module, loaded only for derived students

        model = rebuild_derived(load_factory(derived["teacher"], "teacher"), derived)
    else:
        model = load_factory(ckpt["definition"], "student")
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def _load_checkpoint(p: Path, weights: str | None):
    """A distill checkpoint: {'state_dict': ..., 'definition': SPEC, 'input_names': [...]}."""
    ckpt = _torch_load(p, "model checkpoint")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not ckpt.get("definition"):
        raise ModelError(f"model checkpoint {p}: expected a dict with 'state_dict' and 'definition' (a distill "
                         "checkpoint); for a bare state_dict give MODEL as a factory and --weights FILE")
    definition = str(ckpt["definition"])
    names = ckpt.get("input_names") if isinstance(ckpt.get("input_names"), (list, tuple)) else None
    if definition.startswith("derived:"):
        # a student derived from the teacher (width/depth cut, pruned): rebuilt from the plan it stores; its
        # weights are the checkpoint's own, so --weights is refused as for a .pt2 rather than silently ignored
        if weights:
            raise ModelError(f"--weights does not apply to the derived student checkpoint {p} (its weights are "
                             "inside it)")
        return student_from_checkpoint(ckpt), "checkpoint", names
    module = load_factory(definition, "checkpoint definition")
    if weights:
        load_weights(module, weights, "weights")
    else:
        load_weights(module, p, "checkpoint weights", loaded=ckpt)
    return module, "checkpoint", names
