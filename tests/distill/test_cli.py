"""The CLI: --help, --json, and bad input -> exit 2 with one `error:` line and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgecompress.cli import cli

from .conftest import ROOT, spec


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from edgecompress.cli import cli; "
            "r = CliRunner().invoke(cli, ['distill', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--student-from-teacher' in r.output; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_json_run(mnist_small, tmp_path):
    train, val = mnist_small
    r = CliRunner().invoke(cli, ["distill", "--teacher", spec("mlp_teacher"), "--student", spec("mlp_student"),
                                 "--data", str(train), "--val", str(val), "--out", str(tmp_path / "s.pt"),
                                 "--epochs", "1", "--augment-rotate", "10", "--augment-scale", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["ok"] and obj["stage"] == "distill" and obj["report"]["student"]["params"] > 0
    import torch

    config = torch.load(tmp_path / "s.pt", weights_only=True)["config"]
    assert config["augment_rotate"] == 10 and config["augment_scale"] == 0.1


def test_compare_scratch_prints_the_gain(mnist_small, tmp_path):
    train, val = mnist_small
    r = CliRunner().invoke(cli, ["distill", "--teacher", spec("mlp_teacher"), "--student", spec("mlp_student"),
                                 "--data", str(train), "--val", str(val), "--out", str(tmp_path / "s.pt"),
                                 "--epochs", "1", "--compare-scratch"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "student, hard labels only" in text
    assert "KD gain over the same student trained on hard labels only:" in text and "160 val samples" in text


@pytest.mark.parametrize("args, data_key, needle", [
    (["--student", spec("five_class_student")], "ok", "teacher and student output shapes differ"),
    (["--student", spec("mlp_student")], "labels_out_of_range", "labels out of range"),
    (["--student", spec("mlp_student")], "empty", "empty"),
    (["--student", spec("mlp_student"), "--feature-kd", "body.1:nope"], "ok", "feature-KD layer 'nope' does not exist"),
    (["--student", spec("mlp_student"), "--alpha", "3"], "ok", "alpha must be in [0, 1]"),
    (["--student", spec("mlp_student"), "--augment-scale", "1.5"], "ok", "augment_scale must be"),
    (["--student-from-teacher", "depth=2"], "ok", "no layer stack"),
])
def test_bad_input_exits_2_one_line(bad_data, tmp_path, args, data_key, needle):
    r = CliRunner().invoke(cli, ["distill", "--teacher", spec("mlp_teacher"), *args, "--data", str(bad_data[data_key]),
                                 "--out", str(tmp_path / "s.pt"), "--epochs", "1"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "s.pt").exists()


def test_bad_input_real_process_has_no_traceback(bad_data, tmp_path):
    import os

    cmd = [sys.executable, "-m", "edgecompress", "distill", "--teacher", spec("mlp_teacher"), "--student",
           spec("mlp_student"), "--data", str(bad_data["labels_out_of_range"]), "--out", str(tmp_path / "s.pt"),
           "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "labels out of range: found 12, expected 0..9" in lines[0], p.stderr
    assert json.loads(p.stdout)["ok"] is False
