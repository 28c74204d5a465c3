"""arm64 emulation: an int8 CNN run under qemu-user with the aarch64 onnxruntime wheel matches the x86 run.

Slow: the first run prepares the arm64 root (debootstrap + pip download, about 2-3 minutes, cached under
$EDGECOMPRESS_ARM64_ROOT or ~/.cache/edgecompress/arm64-root); each emulated run then takes ~30 s (importing
onnxruntime under qemu dominates).
"""

from __future__ import annotations

import os
import shutil

import pytest

from edgecompress.bench import EMULATION_NOTE, BenchConfig, bench
from edgecompress.bench.emulation import emulation_root, root_info, setup_emulation
from edgecompress.errors import UnsupportedError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arm64_root():
    if root_info() is None:
        if os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("qemu-aarch64-static"):
            pytest.skip("arm64 root not prepared and cannot be here (needs root, debootstrap, qemu-user-static)")
        setup_emulation()
    return emulation_root()


def test_int8_cnn_emulated_outputs_match_x86(arm64_root, cnn_models, eval_data):
    _, int8 = cnn_models
    rep = bench([int8], BenchConfig(runs=5, warmup=1, emulate="arm64", emulate_runs=1, fidelity_samples=8,
                                    coverage=False), data=eval_data)
    m = rep.models[0]
    emu = m.emulation
    assert emu is not None and emu["machine"] == "aarch64"
    assert m.machine == "x86_64" and not m.emulated  # the host numbers stay the host's
    assert emu["timing_note"] == EMULATION_NOTE and "NOT device speed" in EMULATION_NOTE
    assert EMULATION_NOTE in rep.warnings
    out = emu["parity"]["outputs"][0]
    assert emu["parity"]["samples"] == 8
    assert emu["parity_ok"], emu["parity_summary"]  # max_abs within 5% of the output scale
    assert out["cosine"] > 0.99 and out["top1_agreement"] >= 0.75  # untrained net: near-tied logits may flip
    assert rep.to_dict()["models"][0]["emulated_arm64"]["slowdown_vs_host"] > 1


def test_missing_root_is_a_clear_error(cnn_models, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMPRESS_ARM64_ROOT", str(tmp_path / "none"))
    with pytest.raises(UnsupportedError, match="no arm64 emulation root"):
        bench([cnn_models[1]], BenchConfig(runs=2, emulate="arm64"))


def test_cli_setup_is_cached(arm64_root):
    import json

    from click.testing import CliRunner

    from edgecompress.cli import cli

    r = CliRunner().invoke(cli, ["bench", "--setup-emulation", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)["emulation"]
    assert info["cached"] is True and info["onnxruntime"] and info["python"].startswith("3.")
