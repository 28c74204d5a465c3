"""PackageConfig (the package stage's frozen config) and the stage's report dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

# auto tolerances for the sample check (max |expected - got| <= tol * max(|expected|max, 1))
FLOAT_TOLERANCE = 1e-4
QUANT_TOLERANCE = 2e-2


@dataclass(frozen=True)
class PackageConfig:
    """How to build a release. Field names are the recipe keys of [package] and the CLI flags.

    name / version: used in the tarball's top folder (`<name>-<version>/`), the manifest and the model card.
    tolerance: sample check tolerance relative to the output scale; None = 1e-4 for float models, 2e-2 for
        quantized ones (int8, weight-only low-bit) and fp16/bf16 ones.
    include_types: write per-operator type information into required_operators.config (ORT type reduction).
    measure_latency: when no bench report is given and the target is host-compatible, time the model here.
        None (auto) measures only when the target has a p90 latency budget to check. Measured numbers are not
        reproducible: such a release is not byte-identical to another one (manifest `reproducible: false`);
        pass a bench report (convert does) for latency in a byte-reproducible release.
    latency_runs: timed runs of that measurement.
    eval_samples: at most this many evaluation samples for accuracy (0 = all).
    tarball: also write `<out>.tar.gz` beside the release folder.
    """

    name: str = "model"
    version: str = "0.1.0"
    description: str = ""
    tolerance: float | None = None
    include_types: bool = False
    measure_latency: bool | None = None
    latency_runs: int = 50
    eval_samples: int = 0
    tarball: bool = True

    def __post_init__(self) -> None:
        for key in ("name", "version"):
            v = getattr(self, key)
            if not isinstance(v, str) or not _SAFE_NAME.match(v):
                raise ConfigError(f"{key} must be 1-64 characters of letters, digits, '.', '_', '+', '-' "
                                  f"(starting with a letter or digit), got {v!r}")
        if not isinstance(self.description, str):
            raise ConfigError(f"description must be a string, got {self.description!r}")
        if self.tolerance is not None and (isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float))
                                           or not 0 < self.tolerance < 1):
            raise ConfigError(f"tolerance must be a number in (0, 1), got {self.tolerance!r}")
        for key in ("include_types", "measure_latency", "tarball"):
            if not isinstance(getattr(self, key), bool) and not (key == "measure_latency" and self.measure_latency is None):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if isinstance(self.latency_runs, bool) or not isinstance(self.latency_runs, int) or not 1 <= self.latency_runs <= 100_000:
            raise ConfigError(f"latency_runs must be an integer in 1..100000, got {self.latency_runs!r}")
        if isinstance(self.eval_samples, bool) or not isinstance(self.eval_samples, int) or self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be a non-negative integer (0 = all), got {self.eval_samples!r}")

    def to_dict(self) -> dict[str, Any]:
        from ..artifact import config_to_dict

        return config_to_dict(self)


@dataclass(frozen=True)
class PackageReport:
    """What `package()` built."""

    release: str
    tarball: str | None
    tarball_sha256: str | None
    files: dict[str, dict[str, Any]]
    metrics: dict[str, Any]
    budgets: dict[str, Any]
    mobile: dict[str, Any] | None
    reproducible: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release, "tarball": self.tarball, "tarball_sha256": self.tarball_sha256,
                "files": self.files, "metrics": self.metrics, "budgets": self.budgets, "mobile": self.mobile,
                "reproducible": self.reproducible, "notes": list(self.notes)}


@dataclass(frozen=True)
class VerifyReport:
    """Result of `verify()`: ok only when every check holds; `failures` lists every one that did not."""

    source: str
    failures: tuple[str, ...]
    checks: tuple[str, ...]
    name: str | None = None
    version: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "name": self.name, "version": self.version,
                "failures": list(self.failures), "checks": list(self.checks)}
