"""`edgecompress prune` wiring: help, exit codes, --json."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from edgecompress.cli import cli
from examples import zoo


def invoke(*args):
    return CliRunner().invoke(cli, ["prune", *map(str, args)])


def test_help():
    r = invoke("--help")
    assert r.exit_code == 0 and "--target-macs" in r.output and "--criterion" in r.output


def test_json_success(exported, tmp_path):
    torch.manual_seed(0)
    src = exported(zoo.MLP(hidden=32), (1, 1, 28, 28))
    r = invoke(src, "--out", tmp_path / "p.onnx", "--ratio", "0.5", "--max-drop", "1", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ok"] and d["report"]["params_after"] < d["report"]["params_before"]
    assert [g["channels_after"] for g in d["report"]["groups"]] == [16, 16]


def test_human_output(exported, tmp_path):
    src = exported(zoo.MLP(hidden=16), (1, 1, 28, 28))
    r = invoke(src, "--out", tmp_path / "p.onnx", "--target-macs", "0.6", "--max-drop", "1")
    assert r.exit_code == 0, r.output
    assert "MACs" in r.stderr


def test_ratio_out_of_range_exit_2(exported, tmp_path):
    src = exported(zoo.MLP(hidden=16), (1, 1, 28, 28))
    r = invoke(src, "--out", tmp_path / "p.onnx", "--ratio", "1.5")
    assert r.exit_code == 2 and "ratio" in r.stderr
    r = invoke(src, "--out", tmp_path / "p.onnx", "--target-macs", "0", "--json")
    assert r.exit_code == 2 and "target_macs" in json.loads(r.stdout)["message"]


def test_nothing_prunable_exit_2_with_reasons(exported, tmp_path):
    src = exported(torch.nn.Linear(4, 3), (1, 4))
    r = invoke(src, "--out", tmp_path / "p.onnx", "--ratio", "0.5", "--json")
    assert r.exit_code == 2
    d = json.loads(r.stdout)
    assert not d["ok"] and d["report"]["unprunable"][0]["reasons"]
    assert "nothing in this graph can be pruned" in r.stderr


def test_missing_model_exit_2(tmp_path):
    r = invoke(tmp_path / "nope.onnx", "--out", tmp_path / "p.onnx", "--ratio", "0.5")
    assert r.exit_code == 2
