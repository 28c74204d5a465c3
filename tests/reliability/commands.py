"""How each command is called on the good inputs, and which of its arguments (slots) a case may replace.

Slots: model (an .onnx file), data (feed data), target, weights, factory (a PyTorch `file.py:fn` spec),
inputspec (export's --input), recipe, out (output file or folder), release (what verify checks).
`distill_pruned` is `distill --student-from-pruned MODEL`: its model slot is the pruned teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .fixtures import World
from .harness import RunDirs


@dataclass(frozen=True)
class Command:
    name: str
    slots: tuple[str, ...]
    out_kind: str | None  # "file" | "pt" | "dir" | "csv" (a small file) | None
    argv: Callable[[dict[str, str]], list[str]]
    module: str | None = None  # the CLI module's command when it differs from name (a variant of a command)


def _opt(flag: str, v: dict[str, str], key: str) -> list[str]:
    return [flag, v[key]] if v.get(key) else []


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("targets", ("target",), None, lambda v: ["targets", v.get("target") or "host"]),
    Command("inspect", ("model",), None, lambda v: ["inspect", v["model"]]),
    Command("export", ("factory", "weights", "data", "out", "inputspec"), "file",
            lambda v: ["export", v["factory"], "--input", v["inputspec"], "--out", v["out"],
                       *_opt("--weights", v, "weights"), *_opt("--data", v, "data")]),
    Command("quantize", ("model", "data", "target", "out"), "file",
            lambda v: ["quantize", v["model"], "--calibration", v["data"], "--out", v["out"],
                       *_opt("--target", v, "target"), "--allow-slower"]),
    Command("prune", ("model", "data", "target", "out"), "file",
            lambda v: ["prune", v["model"], "--out", v["out"], "--ratio", "0.5", "--calibration", v["data"],
                       *_opt("--target", v, "target")]),
    Command("bench", ("model", "data", "target", "out"), "csv",
            lambda v: ["bench", v["model"], "--data", v["data"], "--runs", "3", "--warmup", "1", "--csv", v["out"],
                       *_opt("--target", v, "target")]),
    Command("package", ("model", "data", "target", "out"), "dir",
            lambda v: ["package", v["model"], "--out", v["out"], "--eval", v["data"],
                       "--target", v.get("target") or "host"]),
    Command("verify", ("release",), None, lambda v: ["verify", v["release"]]),
    Command("distill", ("factory", "weights", "data", "out"), "pt",
            lambda v: ["distill", "--teacher", v["factory"], *_opt("--teacher-weights", v, "weights"),
                       "--student", v["student"], "--data", v["data"], "--out", v["out"], "--epochs", "1"]),
    Command("distill_pruned", ("model",), "pt",
            lambda v: ["distill", "--teacher", v["factory"], "--teacher-weights", v["teacher_weights"],
                       "--student-from-pruned", v["model"], "--data", v["data"], "--out", v["out"], "--epochs", "1"],
            module="distill"),
    Command("convert", ("recipe", "target", "out"), "dir",
            lambda v: ["convert", v["recipe"], "--out", v["out"], *_opt("--target", v, "target")]),
]}


def good_values(w: World, rd: RunDirs, command: Command) -> dict[str, str]:
    """The slot values of a successful run (outputs inside the run's out/ folder)."""
    from .corpus import good_recipe_text

    out = {"file": "model.onnx", "pt": "student.pt", "dir": "release", "csv": "bench.csv",
           None: "unused"}[command.out_kind]
    recipe = rd.case / "good_recipe.toml"
    if command.name == "convert":
        recipe.write_text(good_recipe_text(w))
    data = {"distill": w.train, "distill_pruned": w.train, "package": w.eval, "bench": w.eval}.get(command.name,
                                                                                                    w.calib)
    model = pruned_teacher(w) if command.name == "distill_pruned" else w.model
    return {
        "model": str(model), "data": str(data), "teacher_weights": str(w.weights), "inputspec": "input:1x1x28x28", "target": "", "weights": "",
        "factory": w.teacher, "student": w.student, "out": str(rd.out / out), "recipe": str(recipe),
        "release": str(w.extra.get("release", rd.case / "no-release")),
    }


def pruned_teacher(w: World) -> str:
    """The world's teacher exported and pruned by edgecompress (built once, outside the inputs folder)."""
    if "pruned" not in w.extra:
        from edgecompress.export import ExportConfig, export
        from edgecompress.prune import PruneConfig, prune

        folder = w.root / "pruned-teacher"
        folder.mkdir(exist_ok=True)
        export(w.teacher, ExportConfig(inputs=("input:1x1x28x28",), weights=str(w.weights)),
               out=folder / "tiny.onnx")
        prune(str(folder / "tiny.onnx"), PruneConfig(ratio=0.5, round_to=1, max_drop=1.0), out=str(folder / "tiny.pruned.onnx"))
        w.extra["pruned"] = folder / "tiny.pruned.onnx"
    return str(w.extra["pruned"])
