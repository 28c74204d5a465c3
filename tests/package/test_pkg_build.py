"""package(): release content, determinism, ORT parity, budgets (all-or-nothing), mobile verdict."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from pkg_helpers import CALIB, EVAL, bench_report_for, lineage_for

from edgecompress.data import load_data
from edgecompress.errors import BudgetError
from edgecompress.fsutil import sha256_file
from edgecompress.package import PackageConfig, package, verify
from edgecompress.package.manifest import REQUIRED_FILES, check_integrity, check_schema

TARGET_TOML = """
name = "{name}"
arch = "x86_64"
execution_providers = ["CPUExecutionProvider"]
[budgets]
{budgets}
"""


def _target(tmp_path: Path, name: str, budgets: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(TARGET_TOML.format(name=name, budgets=budgets))
    return p


def test_release_content(built_release, models):
    rel = built_release / "release"
    files = sorted(p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file())
    assert files == sorted([*REQUIRED_FILES, "manifest.json"])
    m = json.loads((rel / "manifest.json").read_text())
    assert check_schema(m) == [] and check_integrity(m) == []
    for name, entry in m["files"].items():
        assert entry == {"sha256": sha256_file(rel / name), "size": (rel / name).stat().st_size}
    assert m["model"]["inputs"] == [{"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert m["model"]["opset"]["ai.onnx"] == 17
    assert m["model"]["op_census"]["QuantizeLinear"] > 0 and m["model"]["quant_state"] == "qdq"
    assert m["ort"]["optimization_style"] == "Fixed"
    assert "com.microsoft" in m["ort"]["required_operators"]
    assert [r["stage"] for r in m["lineage"]] == ["export", "quantize"]
    assert m["lineage"][1]["config"]["calibration"] == "digits_calibration.npz"  # no local absolute paths
    assert m["lineage"][0]["path"] == "fp32.onnx"
    assert m["calibration"]["sha256"] == load_data(str(CALIB)).content_hash()
    acc = m["metrics"]["accuracy"]
    assert acc["samples"] == 297 and 0.5 < acc["model"] <= 1 and 0.5 < acc["baseline"] <= 1
    assert acc["delta"] == pytest.approx(acc["model"] - acc["baseline"], abs=1e-6)
    assert m["metrics"]["latency"]["source"] == "bench_report"
    assert m["metrics"]["latency"]["latency_ms"]["p90"] == pytest.approx(0.05)
    assert m["reproducible"] is True and m["mobile"] is None
    assert "toolchain" in m and m["toolchain"]["onnxruntime"] == ort.__version__
    tol = json.loads((rel / "sample/tolerance.json").read_text())
    assert tol["rel_tol"] == 0.02 and tol["outputs"] == ["logits"]
    card = (rel / "MODEL_CARD.md").read_text()
    assert card.startswith("# digits v1.0.0") and "Top-1 accuracy" in card
    # nothing in the release names the machine's temp paths
    for p in rel.rglob("*"):
        if p.is_file():
            assert str(built_release).encode() not in p.read_bytes(), p


def test_tarball_layout(built_release):
    with tarfile.open(built_release / "release.tar.gz") as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names[0] == "digits-1.0.0" and names == sorted(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert {m.mode for m in members if m.isfile()} == {0o644} and {m.mode for m in members if m.isdir()} == {0o755}
    raw = (built_release / "release.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME field


def test_packaging_twice_gives_same_tarball(models, tmp_path):
    """Same inputs -> byte-identical tarballs, also for the Runtime-style ORT conversion of a mobile target."""
    for target in ("host", "android-arm64"):
        shas = []
        for i in range(2):
            r = package(models["int8"], PackageConfig(name="d", version="1"), out=tmp_path / f"{target}{i}" / "rel",
                        target=target, baseline=models["fp32"], eval_data=EVAL, calibration=CALIB,
                        lineage=lineage_for(models), bench_report=bench_report_for(models["int8"]))
            shas.append(r.report.tarball_sha256)
            assert sha256_file(tmp_path / f"{target}{i}" / "rel.tar.gz") == r.report.tarball_sha256
        assert shas[0] == shas[1], target


def test_model_ort_matches_model_onnx(built_release):
    rel = built_release / "release"
    x = np.load(EVAL)["input"][:64]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s_onnx = ort.InferenceSession(str(rel / "model.onnx"), so, providers=["CPUExecutionProvider"])
    s_ort = ort.InferenceSession(str(rel / "model.ort"), so, providers=["CPUExecutionProvider"])
    a = np.concatenate([s_onnx.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    b = np.concatenate([s_ort.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    tol = json.loads((rel / "sample/tolerance.json").read_text())["rel_tol"]
    assert np.abs(a - b).max() <= tol * max(np.abs(a).max(), 1.0)
    assert (a.argmax(1) == b.argmax(1)).all()


def test_mobile_target_records_usability_verdict(models, tmp_path):
    r = package(models["int8"], PackageConfig(include_types=True), out=tmp_path / "rel", target="android-arm64",
                eval_data=EVAL)
    m = json.loads((tmp_path / "rel/manifest.json").read_text())
    assert m["mobile"]["execution_provider"] == "NnapiExecutionProvider"
    assert m["mobile"]["verdict"] in ("YES", "MAYBE", "NO")
    assert m["mobile"]["checks"][0]["nodes"] > 0
    assert m["ort"]["optimization_style"] == "Runtime" and m["ort"]["target_platform"] == "arm"
    assert m["metrics"]["latency"]["source"] == "none"  # arm64 target: not measurable on this host
    assert '{"inputs"' in (tmp_path / "rel/required_operators.config").read_text()  # type reduction
    assert "ORT Mobile usability" in (tmp_path / "rel/report.html").read_text()
    assert r.report.mobile == m["mobile"]
    assert verify(tmp_path / "rel").ok


def _assert_nothing_written(parent: Path) -> None:
    assert sorted(p.name for p in parent.iterdir()) == [], list(parent.iterdir())


def test_size_budget_violation_writes_nothing(models, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    tgt = _target(tmp_path, "tiny", "max_size_mb = 0.001")
    with pytest.raises(BudgetError, match=r"max_size_mb: .* exceeds 0\.001 MB \(over by") as ei:
        package(models["int8"], PackageConfig(), out=out / "rel", target=tgt)
    assert ei.value.exit_code == 1
    _assert_nothing_written(out)


def test_accuracy_budget_violation(models, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    tgt = _target(tmp_path, "acc", "max_accuracy_drop = 0.01")
    with pytest.raises(BudgetError, match=r"max_accuracy_drop: accuracy drop .*% exceeds 1\.00% \(over by"):
        package(models["untrained"], PackageConfig(), out=out / "rel", target=tgt, baseline=models["fp32"],
                eval_data=EVAL)
    _assert_nothing_written(out)


def test_latency_budget_uses_bench_report(models, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    tgt = _target(tmp_path, "fast", "max_p90_latency_ms = 0.01")
    with pytest.raises(BudgetError, match=r"max_p90_latency_ms: 0\.05 ms exceeds 0\.01 ms"):
        package(models["int8"], PackageConfig(), out=out / "rel", target=tgt,
                bench_report=bench_report_for(models["int8"]))
    _assert_nothing_written(out)
    ok = package(models["int8"], PackageConfig(), out=out / "rel", target=tgt,
                 bench_report=bench_report_for(models["int8"], p90=0.008))
    assert ok.report.budgets["max_p90_latency_ms"]["ok"] is True


def test_measured_latency_is_flagged_not_reproducible(models, tmp_path):
    r = package(models["fp32"], PackageConfig(latency_runs=5, tarball=False, measure_latency=True), out=tmp_path / "rel",
                target="host")
    lat = r.report.metrics["latency"]
    assert lat["source"] == "measured" and lat["latency_ms"]["p90"] > 0
    assert r.report.reproducible is False and r.report.tarball is None
    assert not (tmp_path / "rel.tar.gz").exists()
    assert "random" in " ".join(r.report.notes)  # no data given: random sample input, said so
    assert verify(tmp_path / "rel").ok


def test_default_is_reproducible_and_measures_only_for_a_latency_budget(models, tmp_path):
    shas = [package(models["int8"], PackageConfig(), out=tmp_path / f"d{i}" / "rel", target="host").report
            for i in range(2)]
    assert shas[0].tarball_sha256 == shas[1].tarball_sha256 and shas[0].reproducible
    assert shas[0].metrics["latency"]["source"] == "none"
    tgt = _target(tmp_path, "budgeted", "max_p90_latency_ms = 1000")
    r = package(models["int8"], PackageConfig(latency_runs=5), out=tmp_path / "b" / "rel", target=tgt).report
    assert r.metrics["latency"]["source"] == "measured" and not r.reproducible
    assert r.budgets["max_p90_latency_ms"]["ok"] is True
