"""The built-in demo: `edgecompress convert` with no recipe.

A pretrained MNIST teacher (examples/mnist_models.py:teacher_deep, 459k parameters, 99.2 % on the eval split,
weights shipped in examples/weights/ and made by scripts/train_demo_teacher.py), a student derived from it
(width 0.4) and distilled, exported, pruned to SIMD-friendly channel counts with reconstruction, quantized to
int8 for the host, benched beside the teacher (interleaved, 1 thread), packaged and verified. The whole run fits
in about two minutes on two cores; nothing is downloaded: the data and the model definitions are in the source
checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .recipe import Recipe, parse_recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEMO_RECIPE = """\
# The built-in demo (`edgecompress convert` with no recipe). Paths are relative to the source checkout.
target = "host"

[model]          # the teacher: 459k parameters, 139 M MACs, 99.2 % on the eval split (scripts/train_demo_teacher.py)
source = "examples/mnist_models.py:teacher_deep"
weights = "examples/weights/mnist_teacher.pt"

[data]
train = "calibration_data/mnist_train.npz"
val = "calibration_data/mnist_val.npz"
calibration = "calibration_data/mnist_calibration.npz"
eval = "calibration_data/mnist_eval.npz"

[distill]        # a student derived from the teacher (40 % of every channel group: 74k parameters), then distilled
student_from_teacher = "width=0.4"
epochs = 10      # a derived student starts from the teacher's channels: 10 epochs suffice (measured, docs/convert.md)
lr = 0.002
alpha = 0.5
amp = false

[export]
inputs = ["input:1x1x28x28"]

[prune]          # a fifth of the channels, down to multiples of 8 (19 -> 16, 38 -> 32), least-squares reconstruction
ratio = 0.2
round_to = 8
samples = 500

[quantize]       # int8 for the host; format pinned (auto would time the candidates: not reproducible)
mode = "static"
format = "qdq"
activation_type = "uint8"

[bench]          # teacher vs student vs pruned vs int8, interleaved, 1 thread
runs = 100
warmup = 10

[package]
name = "mnist-demo"
description = "MNIST digit classifier: a student derived from a ResNet teacher and distilled, pruned, int8 for the host"
"""


def checkout_root() -> Path:
    """The source checkout holding examples/ and calibration_data/ (the demo's inputs)."""
    root = Path(__file__).resolve().parents[2]
    for need in ("examples/mnist_models.py", "examples/weights/mnist_teacher.pt", "calibration_data/mnist_train.npz"):
        if not (root / need).is_file():
            raise InputError(f"the built-in demo needs {need} from the edgecompress source checkout; not found "
                             f"under {root}", hint="run the demo from a clone of the repository, or give a recipe")
    return root


def demo_table() -> dict:
    return tomllib.loads(DEMO_RECIPE)


def demo_recipe(target: str | None = None) -> Recipe:
    return parse_recipe(demo_table(), base_dir=checkout_root(), path=None, target=target)
