"""The built-in demo: `edgecompress convert` with no recipe.

MNIST teacher (examples/mnist_models.py:teacher) trained briefly on the shipped data, a student distilled from
it, exported, pruned with reconstruction, quantized for the host, benched (fp32 against the final model),
packaged and verified. Every stage is budgeted so the whole run fits in about three minutes on two cores.
Nothing is downloaded: the data and the model definitions are in the source checkout.
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

[model]
source = "examples/mnist_models.py:teacher"

[data]
train = "calibration_data/mnist_train.npz"
val = "calibration_data/mnist_val.npz"
calibration = "calibration_data/mnist_calibration.npz"
eval = "calibration_data/mnist_eval.npz"

[train]          # the teacher, from scratch: three epochs over the 3000 training samples
epochs = 3
batch_size = 32
lr = 0.01

[distill]        # teacher (112k parameters) -> a small CNN student (7.7k)
student = "examples/mnist_models.py:student_small"
epochs = 8
batch_size = 64
lr = 0.01
amp = false

[export]
inputs = ["input:1x1x28x28"]
exporter = "torchscript"   # the student exports with either exporter; TorchScript takes 1 s instead of 10-30

[prune]          # a quarter of the channels, least-squares reconstruction on all 500 calibration samples
ratio = 0.25
round_to = 4
samples = 500

[quantize]       # int8 for the host; format pinned (auto would time the candidates: not reproducible)
mode = "static"
format = "qdq"
activation_type = "uint8"
allow_slower = true     # the student is so small that int8 overhead can outweigh its gain; write it anyway

[bench]          # fp32 export vs pruned vs int8, short
runs = 30
warmup = 3

[package]
name = "mnist-demo"
description = "MNIST digit classifier: a student distilled from a ResNet teacher, pruned, int8 for the host"
"""


def checkout_root() -> Path:
    """The source checkout holding examples/ and calibration_data/ (the demo's inputs)."""
    root = Path(__file__).resolve().parents[2]
    for need in ("examples/mnist_models.py", "calibration_data/mnist_train.npz"):
        if not (root / need).is_file():
            raise InputError(f"the built-in demo needs {need} from the edgecompress source checkout; not found "
                             f"under {root}", hint="run the demo from a clone of the repository, or give a recipe")
    return root


def demo_table() -> dict:
    return tomllib.loads(DEMO_RECIPE)


def demo_recipe(target: str | None = None) -> Recipe:
    return parse_recipe(demo_table(), base_dir=checkout_root(), path=None, target=target)
