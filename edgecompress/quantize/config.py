"""QuantizeConfig: the frozen configuration of the quantize stage (field names = recipe keys = CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError
from ..fidelity.config import CompareConfig, state_tuple

MODES = ("auto", "static", "dynamic")
METHODS = ("auto", "minmax", "percentile", "entropy", "histogram")
FORMATS = ("auto", "qdq", "qoperator")
ACTIVATION_TYPES = ("auto", "uint8", "int8")
WEIGHTS = ("int8", "int4")
PRECISIONS = ("int8", "fp16")
ALGORITHMS = ("auto", "rtn", "clip", "gptq")
BLOCK_SIZES = (16, 32, 64, 128, 256)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize. Every default is 'auto': the stage picks by target profile and by measurement.

    mode: auto (dynamic for MatMul-dominated graphs when it wins on fidelity at equal speed, else static),
      static or dynamic.
    method: calibration method; auto picks by fidelity between minmax and the streaming histogram.
    per_channel: None = the target's preference.
    format / activation_type: auto = the target's preference; on the host the candidates are timed side by side.
    metric: how int8 is compared with fp32 on every output (auto: top-1 agreement for class scores, accuracy
      with labels, decision agreement for scalar probabilities, balanced cosine otherwise; docs/fidelity.md).
    detection: a detector's box/score outputs, 'boxes=NAME,scores=NAME[,format=..][,threshold=..]': judged by
      matched-detection recall.
    state: 'IN=OUT' state pairs of a stateful model (closed-loop evaluation); empty = detected; 'none' = off.
    max_drop: largest drop accepted on the worst output before nodes fall back to fp32 (0.01 = 1 %).
    exclude: node names kept in fp32.
    allow_slower: write the model even if int8 measures slower than fp32 on the host.
    weights: int8 (weights and activations, the modes above) or int4 (weight-only 4-bit MatMul/Gemm weights and
      embeddings, ORT's MatMulNBits; activations float or int8 in the kernel, chosen by speed).
    block_size / symmetric / algorithm: int4 only; 0 / None / auto = chosen by measured fidelity and speed.
    precision: int8 (the above) or fp16 (weights and compute in float16, risky ops kept fp32; ARM targets with
      fp16 in their profile).
    """

    NOT_FILES: ClassVar[tuple[str, ...]] = ("weights",)  # a format, although its name ends like a file field's

    mode: str = "auto"
    method: str = "auto"
    per_channel: bool | None = None
    format: str = "auto"
    activation_type: str = "auto"
    metric: str = "auto"
    detection: str = ""
    state: tuple[str, ...] = ()
    max_drop: float = 0.01
    exclude: tuple[str, ...] = ()
    allow_slower: bool = False
    weights: str = "int8"
    block_size: int = 0
    symmetric: bool | None = None
    algorithm: str = "auto"
    precision: str = "int8"

    def __post_init__(self) -> None:
        _one_of("mode", self.mode, MODES)
        _one_of("method", self.method, METHODS)
        _one_of("format", self.format, FORMATS)
        _one_of("activation_type", self.activation_type, ACTIVATION_TYPES)
        object.__setattr__(self, "state", state_tuple(self.state))
        CompareConfig(self.metric, self.detection, self.state)  # validates metric / detection / state
        if self.per_channel is not None and not isinstance(self.per_channel, bool):
            raise ConfigError(f"per_channel must be true, false or unset (target default), got {self.per_channel!r}")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) \
                or not 0 <= float(self.max_drop) < 1:
            raise ConfigError(f"max_drop must be a fraction in [0, 1) (0.01 = 1 % relative), got {self.max_drop!r}")
        if isinstance(self.exclude, str):
            raise ConfigError("exclude must be a list of node names, got a single string")
        ex = tuple(self.exclude)
        if any(not isinstance(n, str) or not n.strip() for n in ex):
            raise ConfigError(f"exclude must hold non-empty node names, got {list(ex)!r}")
        object.__setattr__(self, "exclude", ex)
        if not isinstance(self.allow_slower, bool):
            raise ConfigError(f"allow_slower must be true or false, got {self.allow_slower!r}")
        self._check_low_bit()
        if self.mode == "dynamic" and self.method not in ("auto", "minmax"):
            raise ConfigError(f"method {self.method!r} needs calibration; mode 'dynamic' computes activation ranges "
                              "at run time (use method auto or static mode)")
        if self.mode == "dynamic" and self.activation_type == "int8":
            raise ConfigError("activation_type int8 is not available in mode 'dynamic' (ORT's dynamic "
                              "quantization uses uint8 activations)")

    def _check_low_bit(self) -> None:
        _one_of("weights", self.weights, WEIGHTS)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("algorithm", self.algorithm, ALGORITHMS)
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) \
                or (self.block_size and self.block_size not in BLOCK_SIZES):
            raise ConfigError(f"block_size must be 0 (auto) or one of {', '.join(map(str, BLOCK_SIZES))} (a power "
                              f"of two that MatMulNBits supports), got {self.block_size!r}")
        if self.symmetric is not None and not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be true, false or unset (chosen by measurement), got "
                              f"{self.symmetric!r}")
        int4_only = [k for k, v, d in (("block_size", self.block_size, 0), ("symmetric", self.symmetric, None),
                                       ("algorithm", self.algorithm, "auto")) if v != d]
        if self.weights != "int4" and int4_only:
            raise ConfigError(f"{', '.join(int4_only)} apply to weights int4 only (got weights {self.weights!r})")
        int8_only = [k for k, v in (("mode", self.mode), ("method", self.method), ("format", self.format),
                                    ("activation_type", self.activation_type)) if v != "auto"]
        if self.per_channel is not None:
            int8_only.append("per_channel")
        if (self.weights == "int4" or self.precision == "fp16") and int8_only:
            what = "weights int4" if self.weights == "int4" else "precision fp16"
            raise ConfigError(f"{', '.join(int8_only)} apply to int8 only, not to {what}")
        if self.precision == "fp16" and self.weights == "int4":
            raise ConfigError("precision fp16 and weights int4 are two different formats: pick one")

    @property
    def compare(self) -> CompareConfig:
        return CompareConfig(self.metric, self.detection, self.state)
