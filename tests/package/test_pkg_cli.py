"""`edgecompress package` / `edgecompress verify`: exit codes, --json on stdout, errors without tracebacks."""

from __future__ import annotations

import json

from click.testing import CliRunner
from pkg_helpers import CALIB, EVAL, bench_report_for

from edgecompress.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_help():
    for cmd in ("package", "verify"):
        r = _run(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output


def test_package_then_verify_json(models, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(bench_report_for(models["int8"])))
    r = _run("package", models["int8"], "--target", "host", "--out", tmp_path / "rel", "--baseline", models["fp32"],
             "--eval", EVAL, "--calibration", CALIB, "--name", "digits", "--version", "3.1", "--bench-report", bench,
             "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ok"] is True and d["stage"] == "package"
    assert d["report"]["tarball"].endswith("rel.tar.gz") and d["report"]["reproducible"] is True
    for src in (tmp_path / "rel", tmp_path / "rel.tar.gz"):
        v = _run("verify", src, "--json")
        assert v.exit_code == 0, v.output
        assert json.loads(v.stdout)["ok"] is True
    h = _run("verify", tmp_path / "rel")
    assert h.exit_code == 0 and "verified" in h.output


def test_verify_failure_exits_1_listing_failures(built_release, tmp_path):
    import shutil

    rel = tmp_path / "rel"
    shutil.copytree(built_release / "release", rel)
    (rel / "report.html").write_text("changed")
    (rel / "extra.bin").write_bytes(b"1")
    r = _run("verify", rel, "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["ok"] is False and len(d["failures"]) >= 3  # size + sha256 of report.html, extra file
    h = _run("verify", rel)
    assert h.exit_code == 1 and "FAIL" in h.output and "Traceback" not in h.output
    assert h.output.strip().splitlines()[-1].startswith("error: ")


def test_usage_errors_exit_2(models, tmp_path):
    r = _run("package", tmp_path / "missing.onnx", "--out", tmp_path / "rel", "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["ok"] is False
    r = _run("package", models["int8"], "--out", tmp_path / "rel", "--name", "../bad")
    assert r.exit_code == 2 and "name must be" in r.output
    r = _run("verify", tmp_path / "nothing")
    assert r.exit_code == 2 and "release not found" in r.output
    assert not (tmp_path / "rel").exists()


def test_budget_violation_exits_1(models, tmp_path):
    tgt = tmp_path / "small.toml"
    tgt.write_text('name = "small"\narch = "x86_64"\n[budgets]\nmax_size_mb = 0.001\n')
    r = _run("package", models["int8"], "--target", tgt, "--out", tmp_path / "rel", "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["error"] == "BudgetError" and "max_size_mb" in d["message"] and "over by" in d["message"]
    assert not (tmp_path / "rel").exists() and not (tmp_path / "rel.tar.gz").exists()
