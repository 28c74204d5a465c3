"""The stages `convert` chains, in pipeline order, and where each one's typed config lives.

A recipe table `[<stage>]` maps 1:1 onto the stage's frozen `<Stage>Config` dataclass: the table's keys are the
dataclass's field names. Config classes are imported only when a recipe is read (torch stays out of `--help`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str
    config: str
    help: str


# Pipeline order. `train` is convert's own step (trains the [model] from scratch on data.train; the demo's
# teacher); every other stage is the package of the same name.
STAGES: tuple[StageSpec, ...] = (
    StageSpec("train", "edgecompress.pipeline.train", "TrainConfig",
              "train the [model] from scratch on data.train before anything else (the demo's teacher)"),
    StageSpec("distill", "edgecompress.distill", "DistillConfig",
              "distil a smaller student from the [model] (the teacher) on data.train / data.val"),
    StageSpec("export", "edgecompress.export", "ExportConfig",
              "export the PyTorch model to ONNX and check it against PyTorch"),
    StageSpec("prune", "edgecompress.prune", "PruneConfig",
              "remove channels/units/heads on the ONNX graph, reconstruct on data.calibration"),
    StageSpec("quantize", "edgecompress.quantize", "QuantizeConfig",
              "int8 quantization calibrated on data.calibration, for the target"),
    StageSpec("bench", "edgecompress.bench", "BenchConfig",
              "latency / size / accuracy of the original fp32 model against the final one"),
    StageSpec("package", "edgecompress.package", "PackageConfig",
              "the release folder + tarball (verified afterwards)"),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
_BY_NAME = {s.name: s for s in STAGES}


def stage_spec(name: str) -> StageSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}") from None


def config_class(name: str) -> type:
    """The stage's frozen config dataclass (imports the stage package)."""
    spec = stage_spec(name)
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ConfigError(f"stage {name!r} is not available in this installation: cannot import {spec.module} "
                          f"({exc})", hint="install the missing dependency or drop the stage from the recipe") from None
    try:
        return getattr(module, spec.config)
    except AttributeError:
        raise ConfigError(f"stage {name!r}: {spec.module} has no {spec.config}") from None


def stage_function(name: str):
    spec = stage_spec(name)
    return getattr(importlib.import_module(spec.module), name)
