"""Knowledge distillation (PyTorch): a student learns from a teacher.

    from edgecompress.distill import DistillConfig, distill
    result = distill(DistillConfig(teacher="examples/mnist_models.py:teacher", teacher_weights="teacher.pt",
                                   student="examples/mnist_models.py:student_small"),
                     data="calibration_data/mnist_train.npz", val="calibration_data/mnist_val.npz",
                     out="student.pt")

See docs/distill.md. Modules: config (DistillConfig), losses, students (width/depth from the teacher), data,
trainer (loop, checkpoints, resume, DDP, AMP), qat + qat_stage (--qat), models (SPECs, checkpoint format),
stage (distill()), onnx_module (an ONNX graph as a torch module, weights written back) + recover (`prune --recover`:
label-free distillation of a pruned ONNX model from the original).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._api import callable_module, lazy_exports
from .config import DistillConfig

if TYPE_CHECKING:
    from .stage import DistillReport, distill


def load_student(path):
    """Rebuild the student nn.Module from a distill checkpoint (see edgecompress.distill.models)."""
    from .models import load_student as _load

    return _load(path)


__all__ = ["DistillConfig", "DistillReport", "distill", "load_student"]

lazy_exports(__name__, {"distill": "stage", "DistillReport": "stage"})  # torch only when used
callable_module(__name__, "distill")
