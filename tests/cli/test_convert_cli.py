"""`edgecompress convert`: recipe errors exit 2 naming the key or file; --dump-recipe; --dry-run; --json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecompress.cli import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"

GOOD = f"""
[model]
source = "{ROOT / 'examples/mnist_models.py'}:student"
[data]
calibration = "{DATA / 'mnist_calibration.npz'}"
eval = "{DATA / 'mnist_eval.npz'}"
[export]
inputs = ["input:1x1x28x28"]
[quantize]
[package]
"""


def run(*args: str):
    return CliRunner().invoke(cli, ["convert", *args])


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "recipe.toml"
    p.write_text(text)
    return str(p)


def test_help():
    r = run("--help")
    assert r.exit_code == 0
    for flag in ("--target", "--out", "--dry-run", "--dump-recipe", "--from", "--json"):
        assert flag in r.output


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace("[quantize]", "[quantize]\nbits = 4"), "quantize.bits"),
    (lambda t: t + "\n[prune]\nratio = 0.2\nsamplez = 3\n", "prune.samplez"),
    (lambda t: "colour = 1\n" + t, "'colour'"),
    (lambda t: t.replace("[quantize]", "[quantize]\nmax_drop = \"1%\""), "quantize.max_drop"),
    (lambda t: t.replace('inputs = ["input:1x1x28x28"]', 'inputs = "input:1x1x28x28"'), "export.inputs"),
    (lambda t: t.replace("mnist_eval.npz", "mnist_evil.npz"), "mnist_evil.npz"),
    (lambda t: t.replace("mnist_models.py", "mnist_modelz.py"), "mnist_modelz.py"),
    (lambda t: 'target = "pi9"\n' + t, "'pi9'"),
    (lambda t: t.replace("[model]", "[model]\nsource = 1\n[x]"), "recipe"),  # malformed TOML (duplicate key)
])
def test_recipe_errors_exit_2_naming_the_key_or_file(tmp_path, edit, needle):
    r = run(write(tmp_path, edit(GOOD)), "--dry-run", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and needle in r.output
    assert "Traceback" not in r.output


def test_unknown_target_flag_and_missing_recipe_exit_2(tmp_path):
    r = run(write(tmp_path, GOOD), "--dry-run", "--target", "nowhere-x")
    assert r.exit_code == 2 and "unknown target 'nowhere-x'" in r.output
    r = run(str(tmp_path / "none.toml"), "--dry-run")
    assert r.exit_code == 2 and "none.toml" in r.output


def test_json_error_is_one_object(tmp_path):
    r = CliRunner().invoke(cli, ["convert", write(tmp_path, GOOD.replace("[quantize]", "[quantize]\nbits = 4")),
                                 "--dry-run", "--json"])
    assert r.exit_code == 2
    obj = json.loads(r.stdout)
    assert obj["ok"] is False and obj["exit_code"] == 2 and "quantize.bits" in obj["message"]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = run(write(tmp_path, GOOD), "--dry-run", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "1. export" in r.output and "2. quantize" in r.output and "3. package" in r.output
    assert not out.exists()
    r = CliRunner().invoke(cli, ["convert", "--dry-run", "--json", "--out", str(out)])  # the demo
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert [s["stage"] for s in plan["stages"]] == ["distill", "export", "prune", "quantize", "bench", "package"]
    assert all(s["status"] in ("run", "pending") for s in plan["stages"])


def test_dump_recipe_is_a_valid_recipe(tmp_path):
    r = run("--dump-recipe")
    assert r.exit_code == 0
    text = r.stdout
    assert text.startswith("# edgecompress recipe")
    tomllib.loads(text)
    path = write(tmp_path, text)
    # it names files relative to the checkout: validate it from there
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "calibration_data").symlink_to(DATA)
    r = run(path, "--dry-run", "--out", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output


def test_from_a_stage_the_recipe_lacks_exits_2(tmp_path):
    r = run(write(tmp_path, GOOD), "--dry-run", "--from", "prune")
    assert r.exit_code == 2 and "no [prune] stage" in r.output


def test_run_json_then_cached(tmp_path):
    import torch

    from examples.zoo import concat_net

    torch.manual_seed(0)
    model = tmp_path / "concat.onnx"
    torch.onnx.export(concat_net().eval(), (torch.zeros(1, 1, 28, 28),), str(model), input_names=["input"],
                      output_names=["logits"], dynamo=False)
    recipe = write(tmp_path, f"""
[model]
source = "concat.onnx"
[data]
calibration = "{DATA / 'mnist_calibration.npz'}"
eval = "{DATA / 'mnist_eval.npz'}"
[quantize]
mode = "static"
format = "qdq"
activation_type = "uint8"
allow_slower = true
[package]
name = "cli-test"
measure_latency = false
eval_samples = 50
""")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["convert", recipe, "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["ok"] is True and obj["verify"]["ok"] is True
    assert [s["status"] for s in obj["stages"]] == ["ran", "ran"]
    assert [row["stage"] for row in obj["summary"]] == ["input", "quantize"]
    assert Path(obj["tarball"]).name == "cli-test-0.1.0.tar.gz" and Path(obj["tarball"]).is_file()
    assert "[1/2] quantize: done in" in r.stderr and "summary" in r.stderr
    r = CliRunner().invoke(cli, ["convert", recipe, "--out", str(out), "--json"])
    assert [s["status"] for s in json.loads(r.stdout)["stages"]] == ["cached", "cached"]
