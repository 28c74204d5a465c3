"""Orchestration on a small ONNX recipe: cache hits, late-stage changes, --from, budget failures, summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecompress.errors import BudgetError
from edgecompress.pipeline import convert, parse_recipe
from edgecompress.pipeline.run import describe_plan

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    import torch

    from examples.zoo import concat_net

    torch.manual_seed(0)
    m = concat_net().eval()
    path = tmp_path_factory.mktemp("model") / "concat.onnx"
    torch.onnx.export(m, (torch.zeros(1, 1, 28, 28),), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=False)
    return path


def recipe(model: Path, **over) -> dict:
    d = {
        "model": {"source": str(model)},
        "data": {"calibration": str(DATA / "mnist_calibration.npz"), "eval": str(DATA / "mnist_eval.npz")},
        "quantize": {"mode": "static", "method": "minmax", "format": "qdq", "activation_type": "uint8",
                     "allow_slower": True},
        "package": {"name": "tiny", "measure_latency": False, "eval_samples": 100},
    }
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v}
    return d


def statuses(result) -> dict[str, str]:
    return {s.stage: s.status for s in result.stages}


def release_bytes(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "release").rglob("*") if p.is_file()}
    files.update({p.name: p.read_bytes() for p in out.glob("*.tar.gz")})
    return files


def test_cache_then_late_change_then_from(tmp_path, onnx_model):
    out = tmp_path / "out"
    lines: list[str] = []
    r1 = convert(parse_recipe(recipe(onnx_model), base_dir=tmp_path), out=out, progress=lines.append)
    assert statuses(r1) == {"quantize": "ran", "package": "ran"}
    assert (out / "stages" / "1-quantize" / "stage.json").is_file() and r1.verify["ok"]
    assert any("[1/2] quantize: done in" in line for line in lines)
    first = release_bytes(out)
    assert "release/manifest.json" in first and any(k.endswith(".tar.gz") for k in first)
    rows = {row["stage"]: row for row in r1.summary}
    # the input's accuracy on the eval split (it has labels), equal to ORT's top-1 on those samples computed here
    ev = np.load(DATA / "mnist_eval.npz")
    sess = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    top1 = np.array([sess.run(None, {"input": x[None]})[0].argmax() for x in ev["input"]])
    assert rows["input"]["accuracy_on"] == "eval" and rows["input"]["samples"] == len(ev["labels"])
    assert rows["input"]["accuracy"] == pytest.approx(float((top1 == ev["labels"]).mean()), abs=1e-9)
    assert rows["quantize"]["size_bytes"] < rows["input"]["size_bytes"]

    r2 = convert(parse_recipe(recipe(onnx_model), base_dir=tmp_path), out=out)
    assert statuses(r2) == {"quantize": "cached", "package": "cached"}
    assert release_bytes(out) == first

    plan = describe_plan(parse_recipe(recipe(onnx_model, package={"version": "2.0.0"}), base_dir=tmp_path), out)
    assert [p["status"] for p in plan] == ["cached", "run"]
    r3 = convert(parse_recipe(recipe(onnx_model, package={"version": "2.0.0"}), base_dir=tmp_path), out=out)
    assert statuses(r3) == {"quantize": "cached", "package": "ran"}
    manifest = json.loads((out / "release" / "manifest.json").read_text())
    assert manifest["version"] == "2.0.0"

    r4 = convert(parse_recipe(recipe(onnx_model), base_dir=tmp_path), out=out, from_stage="quantize")
    assert statuses(r4) == {"quantize": "ran", "package": "ran"}
    assert release_bytes(out) == first  # deterministic: rerunning gives the same bytes


def test_budget_failure_stops_and_keeps_completed_stages(tmp_path, onnx_model):
    target = tmp_path / "tiny-target.toml"
    target.write_text('name = "tiny-target"\n[budgets]\nmax_size_mb = 0.00001\n')
    d = recipe(onnx_model)
    d["target"] = str(target)
    out = tmp_path / "out"
    with pytest.raises(BudgetError, match=r"budget not met at stage 2 \(package\).*completed stages \(quantize\)"):
        convert(parse_recipe(d, base_dir=tmp_path), out=out)
    assert (out / "stages" / "1-quantize" / "stage.json").is_file()
    assert not (out / "stages" / "2-package").exists()
    # relaxing the budget reruns only the package stage
    target.write_text('name = "tiny-target"\n[budgets]\nmax_size_mb = 100\n')
    r = convert(parse_recipe(d, base_dir=tmp_path), out=out)
    assert statuses(r) == {"quantize": "cached", "package": "ran"}
