"""ModelArtifact: one model file produced by a stage, with where it came from and what was measured."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fsutil import sha256_file

FORMATS = ("onnx", "ort", "torch", "pt2")


@dataclass(frozen=True)
class ModelArtifact:
    path: Path
    format: str = "onnx"
    stage: str = "input"
    parent: ModelArtifact | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.format not in FORMATS:
            from .errors import ConfigError

            raise ConfigError(f"artifact format must be one of {', '.join(FORMATS)}, got {self.format!r}")

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def lineage(self) -> list[dict[str, Any]]:
        """Stages from the first input to this artifact, oldest first."""
        chain: list[ModelArtifact] = []
        node: ModelArtifact | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return [
            {"stage": a.stage, "path": str(a.path), "format": a.format, "config": a.config, "metrics": a.metrics}
            for a in reversed(chain)
        ]

    def derive(self, path: Path, stage: str, *, config: Any = None, metrics: dict[str, Any] | None = None,
               format: str = "onnx") -> ModelArtifact:
        cfg = config_to_dict(config) if config is not None else {}
        return ModelArtifact(path=path, format=format, stage=stage, parent=self, config=cfg, metrics=metrics or {})


@dataclass(frozen=True)
class StageResult:
    artifact: ModelArtifact
    report: Any

    def to_dict(self) -> dict[str, Any]:
        rep = self.report.to_dict() if hasattr(self.report, "to_dict") else config_to_dict(self.report)
        return {"output": str(self.artifact.path), "stage": self.artifact.stage, "report": rep}


def config_to_dict(obj: Any) -> Any:
    """JSON-friendly view of a frozen config or report dataclass (Paths and tuples become str and lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return obj.item()
    return obj
