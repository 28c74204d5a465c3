"""ExportConfig (the frozen API of the export stage) and the `--input` / `--dynamic` spec grammar.

--input NAME:SHAPE[:DTYPE]    SHAPE is dims joined by 'x' (or ','); a dim is
                                 16          a static size
                                 seq         a dynamic axis named `seq` (example size 2)
                                 seq=16      a dynamic axis named `seq` with example size 16
--dynamic NAME:AXIS=DIM[,AXIS=DIM...]   marks more axes dynamic (the example size stays the one in --input);
                                 with one input, NAME: may be left out ("0=batch,1=seq").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_DYNAMIC_EXAMPLE = 2


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, example shape, dtype, and its dynamic axes (axis -> dim name)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    dynamic: dict[int, str] = field(default_factory=dict)

    def onnx_shape(self) -> tuple[int | str, ...]:
        return tuple(self.dynamic.get(i, d) for i, d in enumerate(self.shape))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.onnx_shape()), "example_shape": list(self.shape),
                "dtype": self.dtype}


def parse_input(spec: str) -> InputSpec:
    parts = str(spec).split(":")
    if len(parts) not in (2, 3) or not parts[0].strip() or not parts[1].strip():
        raise ConfigError(f"inputs: {spec!r} is not NAME:SHAPE[:DTYPE], e.g. input:1x3x224x224:float32")
    name, shape_s = parts[0].strip(), parts[1].strip()
    dtype = parts[2].strip() if len(parts) == 3 else "float32"
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"inputs: {spec!r}: unknown dtype {dtype!r}; e.g. float32, int64") from None
    if dt.kind not in "fiub":
        raise ConfigError(f"inputs: {spec!r}: dtype {dtype!r} is not a numeric type")
    sep = "," if "," in shape_s else "x"
    dims: list[int] = []
    dynamic: dict[int, str] = {}
    for axis, tok in enumerate(shape_s.split(sep)):
        tok = tok.strip()
        dim_name, _, size = tok.partition("=")
        if tok.isdigit():
            if int(tok) <= 0:
                raise ConfigError(f"inputs: {spec!r}: dimension {axis} is {tok}; sizes must be positive")
            dims.append(int(tok))
        elif dim_name.isidentifier() and (not size or (size.isdigit() and int(size) > 0)):
            dims.append(int(size) if size else DEFAULT_DYNAMIC_EXAMPLE)
            dynamic[axis] = dim_name
        else:
            raise ConfigError(f"inputs: {spec!r}: bad dimension {tok!r}; expected a positive integer, a name "
                              "(dynamic axis) or name=size, separated by 'x', e.g. 1x3x224x224 or batchxseq=16x64")
    return InputSpec(name, tuple(dims), str(dt), dynamic)


def parse_dynamic(spec: str, names: list[str]) -> tuple[str, dict[int, str]]:
    """`x:0=batch,1=seq` (or `0=batch` with a single input) -> ("x", {0: "batch", 1: "seq"})."""
    s = str(spec).strip()
    if ":" in s:
        name, _, axes = s.partition(":")
        name = name.strip()
    elif len(names) == 1:
        name, axes = names[0], s
    else:
        raise ConfigError(f"dynamic: {spec!r} must name the input (NAME:AXIS=DIM,...) when the model has "
                          f"{len(names)} inputs")
    if name not in names:
        raise ConfigError(f"dynamic: {spec!r} names input {name!r}; the inputs are {names}")
    out: dict[int, str] = {}
    for item in axes.split(","):
        axis, eq, dim = (p.strip() for p in item.partition("="))
        if not eq or not axis.isdigit() or not dim.isidentifier():
            raise ConfigError(f"dynamic: {spec!r}: expected AXIS=NAME items like 0=batch,1=seq; got {item!r}")
        out[int(axis)] = dim
    return name, out


@dataclass(frozen=True)
class ExportConfig:
    """How to export. Field names are the recipe keys of [export] and the CLI flags (with - for _)."""

    inputs: tuple[str, ...] = ()  # NAME:SHAPE[:DTYPE]; may be empty for a .pt2 (taken from the program)
    weights: str | None = None  # a state_dict file, or a checkpoint dict with 'state_dict' / 'model'
    opset: int | None = None  # None: the exporter's default
    dynamic: tuple[str, ...] = ()  # NAME:AXIS=DIM,... (see module doc)
    output_names: tuple[str, ...] = ()  # default: output / output_<i> / the keys of a returned dict
    tolerance: float = 1e-4  # max abs error allowed, relative to each output's scale (max |ref|, at least 1)
    samples: int = 3  # random inputs checked (dynamic axes take a few different sizes)
    data_samples: int = 16  # at most this many samples of --data are checked
    seed: int = 0
    exporter: str = "auto"  # auto: dynamo, then TorchScript with a notice; or force one
    # keep the exporter's per-node debug metadata (stack traces, module paths, fx names: ~1.8 kB a node, a third
    # of a small int8 model's file); dropped by default (it never changes what the model computes)
    debug_metadata: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "dynamic", tuple(self.dynamic))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        specs = self.input_specs()
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"inputs: duplicate input names in {names}")
        if self.opset is not None and (not isinstance(self.opset, int) or not 7 <= self.opset <= 25):
            raise ConfigError(f"opset must be an integer in 7..25, got {self.opset!r}")
        if not isinstance(self.tolerance, (int, float)) or not 0 < float(self.tolerance) < 1:
            raise ConfigError(f"tolerance must be a number in (0, 1), got {self.tolerance!r}")
        for f in ("samples", "data_samples"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 10000:
                raise ConfigError(f"{f} must be an integer in 1..10000, got {v!r}")
        if not isinstance(self.debug_metadata, bool):
            raise ConfigError(f"debug_metadata must be true or false, got {self.debug_metadata!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"exporter must be one of {', '.join(EXPORTERS)}, got {self.exporter!r}")
        if len(set(self.output_names)) != len(self.output_names) or any(not n for n in self.output_names):
            raise ConfigError(f"output_names must be distinct non-empty names, got {list(self.output_names)}")
        if self.weights is not None and not str(self.weights).strip():
            raise ConfigError("weights must be a file path")

    def input_specs(self) -> list[InputSpec]:
        """Parsed inputs with --dynamic merged in."""
        specs = [parse_input(s) for s in self.inputs]
        names = [s.name for s in specs]
        for d in self.dynamic:
            if not specs:
                raise ConfigError("dynamic: needs inputs (NAME:SHAPE) to refer to")
            name, axes = parse_dynamic(d, names)
            i = names.index(name)
            spec = specs[i]
            bad = [a for a in axes if a >= len(spec.shape)]
            if bad:
                raise ConfigError(f"dynamic: {d!r}: axis {bad[0]} out of range for input {name!r} of rank "
                                  f"{len(spec.shape)}")
            specs[i] = InputSpec(spec.name, spec.shape, spec.dtype, {**spec.dynamic, **axes})
        return specs
