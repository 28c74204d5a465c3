"""Model SPEC loading, weight files, parameter/MAC counting and the student checkpoint format.

Checkpoint (`student.pt`, written atomically with torch.save) is a dict:
    format       "edgecompress.distill/1"
    state_dict   the student's weights (fp32, CPU)
    definition   the student SPEC (`path/file.py:factory` | `pkg.mod:factory`) or, for a derived student,
                 "derived:<width=F|depth=K> of <TEACHER SPEC>"
    derived      None, or {"teacher": SPEC, "teacher_weights": path|None, "kind": "width"|"depth", "value": F,
                 "plan": {...}} — enough to rebuild the module with `load_student(path)`
    input_names  forward() parameter names; metrics, config: what produced it
A derived student also gets `<out>.pt2` (torch.export ExportedProgram) beside it, loadable without edgecompress.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..export.source import load_factory, load_weights, student_from_checkpoint

# the loaders are the export stage's (export/source.py), shared: one SPEC/weights/checkpoint reader
__all__ = ["CHECKPOINT_FORMAT", "count_macs", "count_params", "input_names", "load_factory", "load_student",
           "load_weights", "student_from_checkpoint"]

CHECKPOINT_FORMAT = "edgecompress.distill/1"


def input_names(model: nn.Module) -> list[str]:
    """forward()'s positional parameter names (these are the feed keys)."""
    sig = inspect.signature(model.forward)
    names = [p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if not names:
        names = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not names:
        raise ModelError(f"{type(model).__name__}.forward takes no named inputs; cannot map feed keys to it")
    return names


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: nn.Module, example: dict[str, torch.Tensor]) -> int:
    """Multiply-accumulates of Conv*/Linear layers for one sample (batch 1), measured with forward hooks."""
    total = [0]

    def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(mod, nn.modules.conv._ConvNd):
            k = int(torch.tensor(mod.kernel_size).prod()) * (mod.in_channels // mod.groups)
            total[0] += int(output.numel()) * k
        elif isinstance(mod, nn.Linear):
            total[0] += int(output.numel()) * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear,
                                                                                         nn.modules.conv._ConvNd))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*[v[:1] for v in example.values()])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]


def load_student(path: str | Path) -> nn.Module:
    """Rebuild the student module from a distill checkpoint (user SPEC or derived from the teacher)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"student checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"student checkpoint {p}: unreadable ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"student checkpoint {p}: expected a dict with 'state_dict'")
    return student_from_checkpoint(ckpt)
