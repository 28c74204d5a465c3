"""Local runner end to end: real ORT sessions in their own subprocesses, tiny models, few runs."""

from __future__ import annotations

import pytest

from edgecompress.bench import BenchConfig, bench
from edgecompress.bench.transport import LocalTransport, stage_runner
from edgecompress.errors import ModelError, RemoteError, TargetError

MODEL_KEYS = {"path", "latency_ms", "throughput_per_s", "session_create_ms", "first_run_ms", "peak_rss_mb", "size_mb",
              "providers", "ep_coverage"}
LAT_KEYS = {"p50", "p90", "p95", "p99", "mean", "std", "min", "max"}


def test_two_models_shape_ratios_fidelity(cnn_models, eval_data):
    fp32, int8 = cnn_models
    rep = bench([fp32, int8], BenchConfig(runs=20, warmup=2, fidelity_samples=16), data=eval_data)
    d = rep.to_dict()
    assert set(d) >= {"models", "ratios"}
    assert len(d["models"]) == 2
    for m in d["models"]:
        assert MODEL_KEYS <= set(m)
        assert set(m["latency_ms"]) == LAT_KEYS
        lat = m["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert m["runs"] == 20 and m["throughput_per_s"] > 0
        assert m["peak_rss_mb"] > 10 and m["size_mb"] > 0
        assert m["providers"] == ["CPUExecutionProvider"]
        cov = m["ep_coverage"]
        assert cov["source"] == "profile" and cov["total_nodes"] > 0
        assert cov["nodes"]["CPUExecutionProvider"] == cov["total_nodes"]
        assert cov["partitions"]["CPUExecutionProvider"] >= 1
    (ratio,) = d["ratios"]
    assert ratio["baseline"] == str(fp32) and ratio["model"] == str(int8)
    assert ratio["rounds"] >= 2 and ratio["ratio_p50"] > 0
    sp = ratio["spread"]
    assert sp["min"] <= sp["p10"] <= ratio["ratio_p50"] <= sp["p90"] <= sp["max"]
    fid = d["models"][1]["fidelity"]
    assert fid["samples"] == 16 and fid["outputs"][0]["name"] == "logits"
    assert fid["outputs"][0]["metrics"]["cosine"] > 0.9 and fid["outputs"][0]["kind"] == "scores"  # int8 vs fp32 on real MNIST digits
    assert "accuracy" in d["models"][0]


def test_threads_and_duration(cnn_models):
    fp32, _ = cnn_models
    rep = bench([fp32], BenchConfig(threads=(1, 2), duration_s=0.2, warmup=1, coverage=False))
    assert [m.threads for m in rep.models] == [1, 2]
    assert all(m.runs >= 2 for m in rep.models)
    assert rep.ratios == ()


def test_unavailable_ep_falls_back_loudly(cnn_models):
    fp32, _ = cnn_models
    rep = bench([fp32], BenchConfig(runs=3, warmup=0, coverage=False), target="android-arm64")
    m = rep.models[0]
    assert m.providers == ("CPUExecutionProvider",)
    assert "XnnpackExecutionProvider" in m.missing_providers
    assert any("FELL BACK" in w for w in rep.warnings)
    assert rep.to_dict()["models"][0]["fell_back_to_cpu"] is True


def test_unavailable_ep_strict_is_an_error(cnn_models):
    with pytest.raises(TargetError, match="XnnpackExecutionProvider.*not available"):
        bench([cnn_models[0]], BenchConfig(runs=3, strict=True), target="android-arm64")


def test_model_that_fails_to_load(unloadable_model, tmp_path):
    with pytest.raises(ModelError, match="cannot load"):
        bench([unloadable_model], BenchConfig(runs=2))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        bench([garbage], BenchConfig(runs=2))


def test_runner_without_onnxruntime(tmp_path, cnn_models):
    """A python without numpy/onnxruntime (`-S`: no site-packages) gives one clear error, not a traceback."""
    import json
    import sys

    stage_runner(tmp_path)
    (tmp_path / "job.json").write_text(json.dumps({"mode": "single", "models": [str(cnn_models[0])]}))

    class NoSite(LocalTransport):
        def command(self, staging, job):
            return [sys.executable, "-S", str(staging / "remote_runner.py"), str(staging / job)]

    with pytest.raises(RemoteError, match="no onnxruntime"):
        NoSite(timeout_s=60).run(tmp_path, "job.json")


def test_models_with_different_inputs_interleave(cnn_models, tmp_path):
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    relu = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(relu))
    rep = bench([cnn_models[0], relu], BenchConfig(runs=6, warmup=1, coverage=False))
    assert rep.ratios[0].ratio_p50 > 0 and rep.ratios[0].rounds == 6
