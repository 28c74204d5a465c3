"""Android path: the onnxruntime_perf_test output parser on real-format samples; the device test needs adb + a device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecompress.bench import BenchConfig, bench
from edgecompress.bench.adb import device_attached, parse_perf_test_output, perf_test_args
from edgecompress.errors import ConfigError, RemoteError

SAMPLES = Path(__file__).with_name("perf_test_samples")


def test_parse_cpu_sample():
    r = parse_perf_test_output((SAMPLES / "android_cpu_v1_16.txt").read_text())
    lat = r["latency_ms"]
    assert r["runs"] == 100
    assert lat["mean"] == pytest.approx(12.1538)
    assert lat["p50"] == pytest.approx(11.9936)
    assert lat["p90"] == pytest.approx(12.8554)
    assert lat["p95"] == pytest.approx(13.4012)
    assert lat["p99"] == pytest.approx(16.1208)
    assert lat["min"] == pytest.approx(11.3487) and lat["max"] == pytest.approx(16.9051)
    assert lat["std"] is None  # perf_test does not print it
    assert r["session_create_ms"] == pytest.approx(89.4671)
    assert r["first_run_ms"] == 14
    assert r["throughput_per_s"] == pytest.approx(82.1937)
    assert r["peak_rss_mb"] == pytest.approx(48361472 / 2**20, abs=0.01)
    assert r["cpu_percent"] == 24


def test_parse_new_format_with_total_suffix():
    r = parse_perf_test_output((SAMPLES / "android_xnnpack_v1_20.txt").read_text())
    assert r["latency_ms"]["mean"] == pytest.approx(6.82554)
    assert r["latency_ms"]["p50"] == pytest.approx(6.71203)
    assert r["runs"] == 50
    assert r["peak_rss_mb"] == pytest.approx(61243392 / 2**20, abs=0.01)


def test_parse_failure_quotes_the_tool():
    with pytest.raises(RemoteError, match="no timing summary.*opset"):
        parse_perf_test_output((SAMPLES / "load_failure.txt").read_text())
    with pytest.raises(RemoteError, match="no output"):
        parse_perf_test_output("")


def test_perf_test_args():
    assert perf_test_args("/data/local/tmp/m.onnx", runs=20, threads=4, ep="xnnpack") == [
        "-I", "-m", "times", "-r", "20", "-x", "4", "-e", "xnnpack", "/data/local/tmp/m.onnx"]


def test_adb_needs_perf_test(cnn_models):
    with pytest.raises(ConfigError, match="perf_test"):
        bench([cnn_models[0]], BenchConfig(runs=2, remote="adb://"))


@pytest.mark.skipif(not device_attached() or not os.environ.get("EDGECOMPRESS_PERF_TEST"),
                    reason="needs adb, an attached device and EDGECOMPRESS_PERF_TEST=<onnxruntime_perf_test for Android>")
def test_android_device(cnn_models):
    rep = bench(list(cnn_models), BenchConfig(runs=20, remote="adb://", perf_test=os.environ["EDGECOMPRESS_PERF_TEST"]),
                target="android-arm64")
    assert len(rep.models) == 2 and rep.models[0].latency_ms["p50"] > 0
    assert rep.ratios and rep.ratios[0].ratio_p50 > 0
