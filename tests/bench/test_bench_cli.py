"""`edgecompress bench` through click's CliRunner: exit codes, --json on stdout, --csv, --plot."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edgecompress.cli import cli


def _run(args):
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


def test_help():
    r = _run(["--help"])
    assert r.exit_code == 0 and "--remote" in r.output and "--emulate" in r.output


def test_json_csv_plot(cnn_models, eval_data, tmp_path):
    fp32, int8 = map(str, cnn_models)
    csv_path, png = tmp_path / "b.csv", tmp_path / "b.png"
    r = _run([fp32, int8, "--runs", "10", "--warmup", "1", "--data", str(eval_data), "--fidelity-samples", "8",
              "--json", "--csv", str(csv_path), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [m["path"] for m in d["models"]] == [fp32, int8]
    assert d["ratios"][0]["model"] == int8
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("path,threads") and len(lines) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_exit_codes(cnn_models, unloadable_model, tmp_path):
    r = _run([str(unloadable_model), "--runs", "2", "--json"])
    assert r.exit_code == 2 and "cannot load" in r.stderr
    assert json.loads(r.stdout)["ok"] is False
    r = _run([str(cnn_models[0]), "--runs", "2", "--target", "android-arm64", "--strict"])
    assert r.exit_code == 2 and "not available" in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("error:")]) == 1
    r = _run([str(tmp_path / "missing.onnx")])
    assert r.exit_code == 2
    r = _run(["--runs", "3"])
    assert r.exit_code == 2 and "MODEL" in r.stderr
    r = _run([str(cnn_models[0]), "--threads", "x"])
    assert r.exit_code == 2
    r = _run([str(cnn_models[0]), "--remote", "ssh://127.0.0.1:1", "--runs", "2", "--connect-timeout", "3"])
    assert r.exit_code == 1 and "cannot reach host" in r.stderr
