"""bench of weight-only int4 (MatMulNBits, GatherBlockQuantized) and fp16 models: locally with fidelity against
the fp32 model, and (slow) under qemu arm64 emulation with output parity against the x86 run."""

from __future__ import annotations

import pytest

from edgecompress.bench import BenchConfig, bench
from edgecompress.bench.emulation import root_info


def test_local_bench_int4_and_fp16(lowbit_models):
    paths = [lowbit_models[k] for k in ("mlp_fp32", "mlp_int4", "mlp_fp16")]
    d = bench(paths, BenchConfig(runs=10, warmup=2, fidelity_samples=4), data=lowbit_models["mlp_data"]).to_dict()
    assert len(d["models"]) == 3 and len(d["ratios"]) == 2
    for m in d["models"]:
        assert m["runs"] == 10 and m["latency_ms"]["p50"] > 0
        assert m["ep_coverage"]["nodes"]["CPUExecutionProvider"] == m["ep_coverage"]["total_nodes"]
    fid4, fid16 = d["models"][1]["fidelity"], d["models"][2]["fidelity"]
    assert fid4["samples"] == 4 and 0.98 < fid4["outputs"][0]["metrics"]["cosine"] < 1.0  # int4 is lossy
    assert fid16["outputs"][0]["metrics"]["cosine"] > 0.9999
    assert d["models"][1]["size_mb"] < d["models"][2]["size_mb"] < d["models"][0]["size_mb"]


def test_local_bench_gather_block_quantized(lowbit_models):
    d = bench([lowbit_models["embed_fp32"], lowbit_models["embed_int4"]], BenchConfig(runs=5, warmup=1),
              data=lowbit_models["embed_data"]).to_dict()
    assert d["models"][1]["fidelity"]["outputs"][0]["metrics"]["cosine"] > 0.98


@pytest.mark.slow
def test_emulated_arm64_int4_and_fp16(lowbit_models):
    if root_info() is None:
        pytest.skip("arm64 root not prepared (edgecompress bench --setup-emulation)")
    paths = [lowbit_models[k] for k in ("mlp_int4", "mlp_fp16")]
    rep = bench(paths, BenchConfig(runs=3, warmup=1, emulate="arm64", emulate_runs=1, fidelity_samples=4,
                                   coverage=False), data=lowbit_models["mlp_data"])
    for m in rep.models:
        emu = m.emulation
        assert emu is not None and emu["machine"] == "aarch64", emu
        assert emu["parity_ok"], emu["parity_summary"]
        assert emu["parity"]["samples"] == 4 and emu["parity"]["outputs"][0]["cosine"] > 0.999
