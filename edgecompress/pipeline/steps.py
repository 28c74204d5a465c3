"""One adapter per stage: what feeds it (wire), what its cache key covers (inputs), how it is called (run).

Adapters call the real stage functions with the signatures of docs/DEV-CONVENTIONS.md. `State` carries what
the completed stages produced (model artifacts rebuilt from their stage folders, so a cached stage and a fresh
one look the same to the stages after it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifact import ModelArtifact, config_to_dict
from ..errors import EdgecompressError, RuntimeFailure
from .cache import data_hash, path_hash, source_hash, stable_json
from .registry import stage_function

if TYPE_CHECKING:
    from .recipe import Recipe

Say = Callable[[str], None]


@dataclass
class StepOutput:
    file: str | None = None  # the model artifact, relative to the stage folder
    format: str = "onnx"
    report: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self, config: dict[str, Any], seconds: float) -> dict[str, Any]:
        art = {"file": self.file, "format": self.format} if self.file else None
        return {"config": config, "artifact": art, "report": self.report, "metrics": self.metrics,
                "extra": self.extra, "seconds": round(seconds, 3)}


@dataclass
class State:
    recipe: Recipe
    model: ModelArtifact | None = None  # the model entering the next stage
    artifacts: list[ModelArtifact] = field(default_factory=list)  # every model produced, in order
    trained: Path | None = None  # [train]'s weights
    bench: dict[str, Any] | None = None
    bench_plain: dict[str, Any] | None = None
    package: dict[str, Any] | None = None
    hashes: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)  # one run: inputs don't change

    def path_hash(self, path: str | Path | None) -> str:
        """Content hash of a file or folder ("" for none), computed once per run."""
        if not path:
            return ""
        key = ("path", str(path))
        if key not in self.hashes:
            self.hashes[key] = path_hash(path)
        return self.hashes[key]

    def data_inputs(self, keys: tuple[str, ...]) -> dict[str, str]:
        """Content hashes of the [data] entries `keys`, computed once per run."""
        out = {}
        for k in keys:
            spec = self.recipe.data_spec(k)
            if ("data", spec) not in self.hashes:
                self.hashes[("data", spec)] = data_hash(spec)
            out[f"data.{k}"] = self.hashes[("data", spec)]
        return out

    def __post_init__(self) -> None:
        m = self.recipe.model
        if m.kind in ("onnx", "pt2"):
            self.model = ModelArtifact(path=Path(m.source), format=m.kind, stage="input")
            if m.kind == "onnx":
                self.artifacts.append(self.model)

    @property
    def onnx(self) -> list[ModelArtifact]:
        return [a for a in self.artifacts if a.format == "onnx"]

    @property
    def baseline(self) -> ModelArtifact | None:
        """The model every other is compared with: the exported teacher when the chain distils, else the first
        ONNX model (the export or the recipe's .onnx)."""
        return self.onnx[0] if self.onnx else None

    def apply(self, stage: str, record: dict[str, Any], folder: Path) -> None:
        art = record.get("artifact")
        if art:
            parent = self.model
            self.model = ModelArtifact(path=folder / art["file"], format=art["format"], stage=stage, parent=parent,
                                       config=record.get("config", {}), metrics=record.get("metrics", {}))
            self.artifacts.append(self.model)
        extra = record.get("extra", {})
        if stage == "export" and extra.get("teacher"):
            teacher = ModelArtifact(path=folder / extra["teacher"], format="onnx", stage="teacher")
            self.artifacts.insert(len(self.artifacts) - 1, teacher)  # before the student: the baseline
        if stage == "train":
            if not art:
                raise RuntimeFailure(f"the [train] stage record in {folder} names no weights file",
                                     hint="delete the folder and run again")
            self.trained = folder / art["file"]
        elif stage == "bench":
            self.bench = record.get("report")
            self.bench_plain = json.loads((folder / extra["plain"]).read_text())
        elif stage == "package":
            self.package = {k: str(folder / v) for k, v in extra.items() if v and k in ("release", "tarball")}
            self.package["name"] = extra.get("name", "release")

    def lineage(self, out_root: Path) -> list[dict[str, Any]]:
        """The model's lineage for the release: paths relative to the output folder, and no measured timings
        (a stage's speed measurement differs run to run; the release must not, see docs/convert.md)."""
        rows = self.model.lineage() if self.model else []
        for r in rows:
            r["path"] = _rel(r["path"], out_root)
            r["metrics"] = _deterministic(r.get("metrics") or {})
        return rows


_MEASURED = re.compile(r"(speedup|latency|throughput|seconds|rss|(^|_)ms$|(^|_)s$|_time$)")


def _deterministic(value: Any) -> Any:
    """`value` without the keys that hold wall-clock or memory measurements."""
    if isinstance(value, dict):
        return {k: _deterministic(v) for k, v in value.items() if not _MEASURED.search(str(k))}
    if isinstance(value, list):
        return [_deterministic(v) for v in value]
    return value


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return os.path.basename(path)


def _into(work: Path, artifact_path: Path) -> str:
    """The artifact's (file or folder) path relative to the stage folder, copied in if a stage wrote it elsewhere."""
    p = Path(artifact_path)
    try:
        return p.resolve().relative_to(work.resolve()).as_posix()
    except ValueError:
        if p.is_dir():
            shutil.copytree(p, work / p.name)
        else:
            shutil.copyfile(p, work / p.name)
        return p.name


def _report(report: Any) -> dict[str, Any]:
    if report is None:
        return {}
    d = report.to_dict() if hasattr(report, "to_dict") else config_to_dict(report)
    return json.loads(json.dumps(d, default=str))


def _data(state: State, key: str) -> str | None:
    return state.recipe.data_spec(key) or None


def _target_inputs(state: State, *, budgets: bool = False) -> dict[str, Any]:
    """The target profile as a cache-key input. Only package enforces budgets: for the other stages they are
    left out, so relaxing a budget after a failure reruns package alone."""
    t = state.recipe.target.to_dict()
    for k in ("source", "description") + (() if budgets else ("budgets",)):
        t.pop(k, None)
    return t


class Step:
    name = ""
    data_keys: tuple[str, ...] = ()
    filled: dict[str, str] = {}  # config fields convert fills when the recipe leaves them out (for --dump-recipe)

    def prefill(self, table: dict[str, Any], recipe_model: Any) -> dict[str, Any]:
        """Recipe-time defaults taken from [model] (before the config is built)."""
        return table

    def wire(self, cfg: Any, state: State) -> Any:
        """Run-time values taken from earlier stages (e.g. the trained teacher's weights)."""
        return cfg

    def inputs(self, cfg: Any, state: State) -> dict[str, Any]:
        d: dict[str, Any] = state.data_inputs(self.data_keys)
        if state.model is not None:
            d["model"] = state.path_hash(state.model.path)
        return d

    def run(self, cfg: Any, state: State, work: Path, say: Say) -> StepOutput:
        raise NotImplementedError


class TrainStep(Step):
    name = "train"
    data_keys = ("train", "val")

    def inputs(self, cfg, state):
        m = state.recipe.model
        return {**super().inputs(cfg, state), "source": source_hash(m.source),
                "weights": state.path_hash(m.weights)}

    def run(self, cfg, state, work, say):
        from .train import train

        m = state.recipe.model
        metrics = train(m.source, cfg, data=_data(state, "train"), val=_data(state, "val"), out=work / "model.pt",
                        weights=m.weights or None, progress=say)
        return StepOutput(file="model.pt", format="torch", report=metrics, metrics=metrics)


class DistillStep(Step):
    name = "distill"
    data_keys = ("train", "val")
    filled = {"teacher": "[model].source", "teacher_weights": "[model].weights, or the weights [train] wrote"}

    def prefill(self, table, recipe_model):
        table = dict(table)
        if "teacher" not in table:
            table["teacher"] = recipe_model.source
            if "teacher_weights" not in table and recipe_model.weights:
                table["teacher_weights"] = recipe_model.weights
        return table

    def wire(self, cfg, state):
        if state.trained is not None and cfg.teacher == state.recipe.model.source:
            return dataclasses.replace(cfg, teacher_weights=str(state.trained))
        return cfg

    def inputs(self, cfg, state):
        d = state.data_inputs(self.data_keys)
        d["teacher"] = source_hash(cfg.teacher)
        d["teacher_weights"] = state.path_hash(cfg.teacher_weights)
        d["student"] = source_hash(cfg.student) if cfg.student else ""
        d["student_weights"] = state.path_hash(cfg.student_weights)
        return d

    def run(self, cfg, state, work, say):
        result = stage_function("distill")(cfg, data=_data(state, "train"), out=work / "student.pt",
                                           val=_data(state, "val"), progress=True)
        return StepOutput(file=_into(work, result.artifact.path), format="torch", report=_report(result.report),
                          metrics=dict(result.artifact.metrics))


class ExportStep(Step):
    name = "export"
    data_keys = ("calibration",)
    filled = {"weights": "[model].weights, or the weights [train] / [distill] wrote"}

    def prefill(self, table, recipe_model):
        if "weights" not in table and recipe_model.weights:
            return {**table, "weights": recipe_model.weights}
        return table

    def torch_model(self, state: State) -> tuple[str, str | None]:
        """(model SPEC or .pt2, weights) that export takes: the distilled student, the trained model, or the
        recipe's [model]."""
        art = state.model
        if art is not None and art.stage == "distill":
            return str(art.path), None  # export reads distill checkpoints (SPEC or derived student) itself
        if art is not None and art.stage == "train":
            return state.recipe.model.source, str(art.path)
        return state.recipe.model.source, None

    def teacher(self, state: State) -> tuple[str, str | None] | None:
        """(SPEC, weights) of the distill stage's teacher when the chain distils: it is exported beside the
        student, so that bench times it in the same interleaved run and the summary and the package compare
        every model against it (the baseline a user replaces)."""
        dcfg = state.recipe.config("distill")
        if dcfg is None:
            return None
        dcfg = STEPS["distill"].wire(dcfg, state)
        return dcfg.teacher, dcfg.teacher_weights

    def wire(self, cfg, state):
        _, weights = self.torch_model(state)
        if state.model is not None and state.model.stage in ("train", "distill") and cfg.weights != weights:
            return dataclasses.replace(cfg, weights=weights)
        return cfg

    def inputs(self, cfg, state):
        d = super().inputs(cfg, state)
        model, _ = self.torch_model(state)
        d["source"] = state.path_hash(model) if Path(model).is_file() else source_hash(model)
        d["weights"] = state.path_hash(cfg.weights)
        teacher = self.teacher(state)
        if teacher is not None:
            d["teacher"] = [source_hash(teacher[0]), state.path_hash(teacher[1])]
        return d

    def run(self, cfg, state, work, say):
        model, _ = self.torch_model(state)
        result = stage_function("export")(model, cfg, out=work / "model.onnx", data=_data(state, "calibration"),
                                          progress=say)
        extra: dict[str, Any] = {}
        teacher = self.teacher(state)
        if teacher is not None:
            say("exporting the teacher (the baseline every model is compared with)")
            t = stage_function("export")(teacher[0], dataclasses.replace(cfg, weights=teacher[1]),
                                         out=work / "teacher.onnx", data=_data(state, "calibration"))
            extra["teacher"] = _into(work, t.artifact.path)
        return StepOutput(file=_into(work, result.artifact.path), report=_report(result.report),
                          metrics=dict(result.artifact.metrics), extra=extra)


class OnnxStep(Step):
    """prune / quantize: model in, model out, calibration + eval data, target."""

    data_keys = ("calibration", "eval")

    def inputs(self, cfg, state):
        return {**super().inputs(cfg, state), "target": _target_inputs(state)}

    def run(self, cfg, state, work, say):
        fn = stage_function(self.name)
        result = fn(state.model, cfg, out=work / "model.onnx", calibration=_data(state, "calibration"),
                    eval_data=_data(state, "eval"), target=state.recipe.target)
        return StepOutput(file=_into(work, result.artifact.path), report=_report(result.report),
                          metrics=dict(result.artifact.metrics))


class PruneStep(OnnxStep):
    name = "prune"


class QuantizeStep(OnnxStep):
    name = "quantize"


class BenchStep(Step):
    name = "bench"
    data_keys = ("eval",)

    def inputs(self, cfg, state):
        return state.data_inputs(self.data_keys) | {
            "models": [state.path_hash(a.path) for a in state.onnx], "target": _target_inputs(state)}

    def run(self, cfg, state, work, say):
        models = [str(a.path) for a in state.onnx]
        if not models:
            raise EdgecompressError("[bench] has no ONNX model to measure")
        report = stage_function("bench")(models, cfg, data=_data(state, "eval"), target=state.recipe.target, log=say)
        (work / "bench.plain.json").write_text(stable_json(report) + "\n")
        return StepOutput(report=_report(report), extra={"plain": "bench.plain.json"})


class PackageStep(Step):
    name = "package"
    data_keys = ("calibration", "eval")

    def inputs(self, cfg, state):
        d = {**super().inputs(cfg, state), "target": _target_inputs(state, budgets=True)}
        d["baseline"] = state.path_hash(state.baseline.path) if state.baseline else ""
        d["bench"] = state.bench_plain or {}
        d["lineage"] = [{k: r[k] for k in ("stage", "format", "config")} for r in state.lineage(Path("/"))]
        return d

    def run(self, cfg, state, work, say):
        out_root = work.parent.parent
        result = stage_function("package")(state.model, cfg, out=work / "release", target=state.recipe.target,
                                           baseline=state.baseline, eval_data=_data(state, "eval"),
                                           calibration=_data(state, "calibration"),
                                           lineage=state.lineage(out_root), bench_report=state.bench_plain)
        rep = _report(result.report)
        release = Path(result.artifact.path)
        release_dir = release if release.is_dir() else release.parent
        extra = {"release": _into(work, release_dir), "name": f"{cfg.name}-{cfg.version}"}
        tar = rep.get("tarball")
        if tar:
            extra["tarball"] = _into(work, Path(tar))
        return StepOutput(report=rep, extra=extra)


STEPS: dict[str, Step] = {s.name: s for s in (TrainStep(), DistillStep(), ExportStep(), PruneStep(), QuantizeStep(),
                                              BenchStep(), PackageStep())}
