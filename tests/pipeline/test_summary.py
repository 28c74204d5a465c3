"""The convert summary: the exported teacher is the baseline row, every ONNX row's speed-up comes from bench's
interleaved run, its fidelity and accuracy are recomputed here with ONNX Runtime, and regressions are marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecompress.pipeline import convert, parse_recipe
from edgecompress.pipeline.summary import SLOWER_BY, _marks, render

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"
MODELS = ROOT / "examples" / "mnist_models.py"


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """the demo's teacher -> student derived at width 0.25, one short epoch -> export -> quantize -> bench."""
    out = tmp_path_factory.mktemp("conv") / "out"
    d = {
        "model": {"source": f"{MODELS}:teacher_deep", "weights": str(ROOT / "examples/weights/mnist_teacher.pt")},
        "data": {"train": str(DATA / "mnist_train.npz"), "val": str(DATA / "mnist_val.npz"),
                 "calibration": str(DATA / "mnist_calibration.npz"), "eval": str(DATA / "mnist_eval.npz")},
        "distill": {"student_from_teacher": "width=0.25", "epochs": 1, "max_samples": 256, "amp": False},
        "export": {"inputs": ["input:1x1x28x28"]},
        "quantize": {"mode": "static", "method": "minmax", "format": "qdq", "activation_type": "uint8",
                     "allow_slower": True, "max_drop": 0.9},
        "bench": {"runs": 5, "warmup": 1},
        "package": {"name": "kd", "measure_latency": False, "eval_samples": 100},
    }
    result = convert(parse_recipe(d, base_dir=ROOT), out=out)
    return result, out


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def test_teacher_is_the_exported_baseline_row(distilled):
    result, out = distilled
    rows = result.summary
    assert [r["stage"] for r in rows] == ["teacher", "distill", "export", "quantize"]
    teacher = rows[0]
    assert teacher["baseline"] and teacher["format"] == "onnx" and teacher["speedup"] == 1.0
    assert (out / "stages" / "2-export" / "teacher.onnx").is_file()
    assert not any(r["baseline"] for r in rows[1:])
    assert [s.stage for s in result.stages] == ["distill", "export", "quantize", "bench", "package"]


def test_rows_match_onnx_runtime(distilled):
    result, out = distilled
    z = np.load(DATA / "mnist_eval.npz")
    x, y = z["input"].astype(np.float32), z["labels"]
    ref = _logits(out / "stages" / "2-export" / "teacher.onnx", x).argmax(1)
    for r in result.summary:
        if r["format"] != "onnx":
            assert r["accuracy_on"] == "val"
            continue
        stage_dir = next((out / "stages").glob(f"*-{r['stage'] if r['stage'] != 'teacher' else 'export'}"))
        pred = _logits(stage_dir / r["file"], x).argmax(1)
        assert r["accuracy"] == pytest.approx(float((pred == y).mean()))
        assert r["samples"] == len(y)
        if not r["baseline"]:
            assert r["fidelity_metric"] == "top1_agreement"
            assert r["fidelity"] == pytest.approx(float((pred == ref).mean()))
            assert r["speedup"] > 0 and r["p50_ms"] > 0


def test_package_compares_the_release_with_the_teacher(distilled):
    import json

    result, out = distilled
    size = json.loads((Path(result.release) / "manifest.json").read_text())["metrics"]["size"]
    teacher = out / "stages" / "2-export" / "teacher.onnx"
    assert size["baseline_mb"] == pytest.approx(teacher.stat().st_size / 1e6, abs=1e-6)
    assert size["ratio_vs_baseline"] == pytest.approx(teacher.stat().st_size / size["onnx_bytes"], rel=1e-3)


def test_marks_say_what_got_worse():
    prev = {"stage": "prune", "speedup": 4.0, "accuracy": 0.99}
    worse = {"stage": "quantize", "speedup": 4.0 / (SLOWER_BY + 0.1), "accuracy": 0.985, "samples": 1000}
    marks = _marks(worse, prev)
    assert len(marks) == 2
    assert marks[0].startswith("slower than prune: 1.13x its time")
    assert marks[1] == "less accurate than prune: -0.5 pt, 5 more errors in 1000"
    better = {"stage": "quantize", "speedup": 6.0, "accuracy": 0.99, "samples": 1000}
    assert _marks(better, prev) == []
    noise = {"stage": "quantize", "speedup": 4.0 / (SLOWER_BY - 0.01), "accuracy": 0.99}
    assert _marks(noise, prev) == []


def test_render_explains_the_baseline_and_the_marks(distilled):
    from rich.console import Console

    result, _ = distilled
    rows = [dict(r, marks=[]) for r in result.summary]
    rows[-1]["marks"] = ["less accurate than export: -0.4 pt, 4 more errors in 1000"]
    table, _ = render(rows, [], 1.0, "summary")
    con = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    con.print(table)
    text = con.export_text()
    assert "teacher *" in text and "* baseline: teacher (teacher.onnx)" in text
    assert "1. quantize: less accurate than export: -0.4 pt" in text
