"""The spine's CLI contract: --help, exit codes, --json, torch-free commands, and bad input handled cleanly
(exit 2, one `error:` line, no traceback, no partial file, nothing left in the working directory)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgecompress.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]

MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))) + x, 1))

    class TwoIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, a, b):
            return self.fc(a + b)

    class Noisy(nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x)

    def net():
        torch.manual_seed(0)
        return Net()

    def two_in():
        return TwoIn()

    def noisy():
        return Noisy()

    def not_a_module():
        return 42

    def raises():
        raise RuntimeError("boom")
""")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.fixture
def work(tmp_path, monkeypatch):
    """cwd = an empty folder; inputs live in a sibling folder."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "models.py").write_text(MODELS)
    (inputs / "syntax_error.py").write_text("def net(:\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return inputs, cwd


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _assert_clean_failure(res, cwd: Path, code: int = 2, match: str = ""):
    assert res.exit_code == code, (res.exit_code, res.stderr, res.stdout)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    if match:
        assert match in lines[0], lines[0]
    assert _listing(cwd) == [], _listing(cwd)


def test_help_of_spine_commands():
    res = _invoke(["--help"])
    assert res.exit_code == 0
    for name in ("export", "inspect", "targets", "quantize", "convert"):
        assert name in res.stdout
    for name in ("export", "inspect", "targets"):
        r = _invoke([name, "--help"])
        assert r.exit_code == 0 and "Usage" in r.stdout and "Example" in r.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_of_every_registered_command(name):
    module = ROOT / (COMMANDS[name][0].replace(".", "/") + ".py")
    assert module.is_file(), f"{name} is registered but {module} does not exist"
    r = _invoke([name, "--help"])
    assert r.exit_code == 0 and "Usage" in r.stdout, r.output
    assert "--json" in r.stdout


def test_unknown_command_is_usage_error():
    assert _invoke(["exprot"]).exit_code == 2


def test_torch_free_commands(tmp_path):
    """`edgecompress --help`, `inspect` and `targets` never import torch."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    probe = ("import sys\nfrom edgecompress.cli import main\nsys.argv = ['edgecompress'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "sys.stderr.write('\\nEXIT=%s TORCH=%s\\n' % (code, 'torch' in sys.modules))\n")
    for args in (["--help"], ["inspect", str(tmp_path / "m.onnx")], ["inspect", str(tmp_path / "m.onnx"), "--json"],
                 ["targets"], ["targets", "--json"]):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
        assert "EXIT=0 TORCH=False" in r.stderr, (args, r.stderr[-2000:])


def test_export_json_reports_parity_per_output(work):
    inputs, cwd = work
    res = _invoke(["export", f"{inputs}/models.py:net", "--input", "x:batchx1x8x8", "--out", "net.onnx",
                   "--exporter", "torchscript", "--json"])
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["ok"] is True and d["stage"] == "export"
    rep = d["report"]
    assert rep["max_error_rel_to_scale"] <= 1e-4
    assert rep["parity"][0]["outputs"][0]["rel_to_scale"] <= 1e-4
    assert rep["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert _listing(cwd) == ["net.onnx"]
    r2 = _invoke(["inspect", "net.onnx", "--json"])
    assert json.loads(r2.stdout)["inputs"][0]["shape"] == ["batch", 1, 8, 8]


def test_export_human_output_on_stderr_only(work):
    inputs, cwd = work
    res = _invoke(["export", f"{inputs}/models.py:net", "--input", "x:1x1x8x8", "--out", "n.onnx",
                   "--exporter", "torchscript"])
    assert res.exit_code == 0 and res.stdout == ""
    assert "parity vs PyTorch" in res.stderr and "wrote" in res.stderr
    assert "Warning" not in res.stderr  # exporter chatter captured


def test_export_over_tolerance_exits_1_with_report(work):
    inputs, cwd = work
    res = _invoke(["export", f"{inputs}/models.py:noisy", "--input", "x:1x16", "--out", "n.onnx",
                   "--exporter", "torchscript", "--json"])
    assert res.exit_code == 1
    d = json.loads(res.stdout)
    assert d["ok"] is False and d["error"] == "ValidationError"
    assert d["report"]["parity"][0]["outputs"][0]["ok"] is False
    _assert_clean_failure(res, cwd, code=1, match="over tolerance")


def _bad_cases(inputs: Path) -> dict[str, tuple[list[str], str]]:
    m = f"{inputs}/models.py"
    base = ["--input", "x:1x1x8x8", "--out", "out.onnx", "--exporter", "torchscript"]
    return {
        "unknown factory": ([f"{m}:nope", *base], "no callable 'nope'"),
        "unknown module": (["no_such_pkg.models:net", *base], "cannot import 'no_such_pkg.models'"),
        "missing file": ([f"{inputs}/absent.py:net", *base], "not found"),
        "syntax error": ([f"{inputs}/syntax_error.py:net", *base], "syntax error"),
        "not a module": ([f"{m}:not_a_module", *base], "expected a torch.nn.Module"),
        "factory raises": ([f"{m}:raises", *base], "factory raised RuntimeError: boom"),
        "malformed shape": ([f"{m}:net", "--input", "x:1xZ!x8", "--out", "out.onnx"], "bad dimension"),
        "no shape": ([f"{m}:net", "--input", "x", "--out", "out.onnx"], "NAME:SHAPE"),
        "wrong rank": ([f"{m}:net", "--input", "x:1x8x8", "--out", "out.onnx"], "forward() fails"),
        "no inputs": ([f"{m}:net", "--out", "out.onnx"], "--input NAME:SHAPE"),
        "corrupt weights": ([f"{m}:net", *base, "--weights", f"{inputs}/corrupt.pt"], "not a readable torch file"),
        "empty weights": ([f"{m}:net", *base, "--weights", f"{inputs}/empty.pt"], "empty"),
        "pickled code": ([f"{m}:net", *base, "--weights", f"{inputs}/evil.pt"], "pickles Python objects or code"),
        "pickled object": ([f"{m}:net", *base, "--weights", f"{inputs}/object.pt"], "pickles Python objects"),
        "weights missing": ([f"{m}:net", *base, "--weights", f"{inputs}/none.pt"], "not found"),
        "out folder missing": ([f"{m}:net", "--input", "x:1x1x8x8", "--out", "no/such/dir/m.onnx"], "does not exist"),
        "out parent is a file": ([f"{m}:net", "--input", "x:1x1x8x8", "--out", f"{inputs}/models.py/m.onnx"],
                                 "not a directory"),
        "out is a folder": ([f"{m}:net", "--input", "x:1x1x8x8", "--out", str(inputs)], ""),
        "no --out": ([f"{m}:net", "--input", "x:1x1x8x8"], "--out FILE.onnx is required"),
        "out not .onnx": ([f"{m}:net", "--input", "x:1x1x8x8", "--out", "model.txt"], ".onnx"),
        "data wrong shape": ([f"{m}:net", *base, "--data", f"{inputs}/shape.npz"], "expected [1, 1, 8, 8]"),
        "data wrong dtype": ([f"{m}:net", *base, "--data", f"{inputs}/dtype.npz"], "dtype int64, expected float32"),
        "data NaN": ([f"{m}:net", *base, "--data", f"{inputs}/nan.npz"], "NaN"),
        "data wrong names": ([f"{m}:two_in", "--input", "a:1x8", "--input", "b:1x8", "--out", "out.onnx",
                              "--data", f"{inputs}/names.npz"], "input names do not match"),
        "data missing": ([f"{m}:net", *base, "--data", f"{inputs}/nothing.npz"], "not found"),
        "bad opset": ([f"{m}:net", *base, "--opset", "2"], "opset"),
        "bad dynamic": ([f"{m}:net", *base, "--dynamic", "x:9=batch"], "out of range"),
    }


@pytest.fixture
def bad_inputs(work):
    import torch

    inputs, cwd = work
    (inputs / "corrupt.pt").write_bytes(b"PK\x03\x04 definitely not a zip archive" * 3)
    (inputs / "empty.pt").write_bytes(b"")
    (inputs / "evil.pt").write_bytes(pickle.dumps({"w": Evil()}))
    import argparse

    torch.save({"w": argparse.Namespace(a=1)}, inputs / "object.pt")
    np.savez(inputs / "shape.npz", x=np.zeros((3, 1, 9, 9), np.float32))
    np.savez(inputs / "dtype.npz", x=np.zeros((3, 1, 8, 8), np.int64))
    nan = np.zeros((3, 1, 8, 8), np.float32)
    nan[1, 0, 0, 0] = np.nan
    np.savez(inputs / "nan.npz", x=nan)
    np.savez(inputs / "names.npz", a=np.zeros((2, 8), np.float32), c=np.zeros((2, 8), np.float32))
    return inputs, cwd


def test_export_bad_input_exits_2_cleanly(bad_inputs):
    inputs, cwd = bad_inputs
    before_inputs = _listing(inputs)
    for label, (args, match) in _bad_cases(inputs).items():
        res = _invoke(["export", *args])
        try:
            _assert_clean_failure(res, cwd, match=match)
        except AssertionError as exc:
            raise AssertionError(f"case {label!r}: {exc}") from None
        assert _listing(inputs) == before_inputs, label
    assert not (cwd / "pwned").exists()


def test_export_bad_input_json_error(bad_inputs):
    inputs, cwd = bad_inputs
    res = _invoke(["export", f"{inputs}/models.py:nope", "--input", "x:1x1x8x8", "--out", "o.onnx", "--json"])
    assert res.exit_code == 2
    d = json.loads(res.stdout)
    assert d["ok"] is False and d["exit_code"] == 2 and "nope" in d["message"]


def test_export_unwritable_output_folder(work):
    """A folder where files cannot be created (even by root): /sys here. Fails before any export work."""
    import tempfile

    try:
        tempfile.TemporaryFile(dir="/sys").close()
        pytest.skip("/sys is writable on this machine")
    except OSError:
        pass
    inputs, cwd = work
    res = _invoke(["export", f"{inputs}/models.py:net", "--input", "x:1x1x8x8", "--out", "/sys/m.onnx"])
    _assert_clean_failure(res, cwd, match="not writable")
    assert "exporting" not in res.stderr


@pytest.mark.parametrize("content", [b"", b"garbage \x00\x01\x02" * 20, b"\x08\x07\x12\x03abc"])
def test_inspect_corrupt_onnx_exits_2(work, content):
    inputs, cwd = work
    (inputs / "bad.onnx").write_bytes(content)
    _assert_clean_failure(_invoke(["inspect", str(inputs / "bad.onnx")]), cwd)
    _assert_clean_failure(_invoke(["inspect", str(inputs / "missing.onnx")]), cwd)
    res = _invoke(["inspect", str(inputs / "bad.onnx"), "--json"])
    assert json.loads(res.stdout)["ok"] is False


def test_export_debug_shows_exporter_log(work):
    inputs, cwd = work
    res = CliRunner().invoke(cli, ["--debug", "export", f"{inputs}/models.py:net", "--input", "x:1x1x8x8",
                                   "--out", "n.onnx", "--exporter", "torchscript"])
    assert res.exit_code == 0
    quiet = _invoke(["export", f"{inputs}/models.py:net", "--input", "x:1x1x8x8", "--out", "n.onnx",
                     "--exporter", "torchscript"])
    # the TorchScript exporter warns that it is deprecated: captured, shown only with --debug
    assert "DeprecationWarning" in res.stderr and "DeprecationWarning" not in quiet.stderr
    failed = CliRunner().invoke(cli, ["--debug", "export", f"{inputs}/models.py:noisy", "--input", "x:1x16",
                                      "--out", "n.onnx", "--exporter", "torchscript"])
    assert failed.exit_code == 1 and "DeprecationWarning" in failed.stderr  # the log also comes with failures
