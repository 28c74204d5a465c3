"""The quantize stage through its Python API: report contents, candidate selection, fp32 fallback, exclusions."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from edgecompress.artifact import ModelArtifact
from edgecompress.errors import ConfigError, ValidationError
from edgecompress.onnxgraph.census import quant_state
from edgecompress.quantize import QuantizeConfig, quantize
from edgecompress.targets import host_profile


def test_defaults_report_everything(tiny_onnx, mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "q.onnx"
    art = ModelArtifact(tiny_onnx, stage="export")
    res = quantize(art, QuantizeConfig(allow_slower=True), out=out, calibration=mnist_small["calib"])
    r = res.report.to_dict()
    assert quant_state(onnx.load(str(out))) in ("qdq", "qoperator", "dynamic")
    assert os.listdir(tmp_path) == ["q.onnx"]
    assert [s["stage"] for s in res.artifact.lineage()] == ["export", "quantize"]
    # host target: candidates timed side by side, the reason says so
    assert "side by side" in r["format_reason"] and len(r["candidates"]) >= 3
    assert r["speed"]["measured"] and r["speed"]["threads"] == 1 and r["speed"]["speedup"] > 0
    assert r["census"]["total"] == 3 and r["census"]["int8"] + r["census"]["float"] == 3
    cal = next(iter(r["calibration"].values()))
    assert cal["samples"] == 48 and cal["seconds"] > 0 and cal["peak_rss_mb"] > 0  # 64 minus a held-out quarter
    assert r["fidelity"]["samples"] == 16 and "held-out" in r["fidelity_data"]
    assert r["fidelity"]["metric"] == "accuracy" and r["fidelity"]["against"] == "labels"
    assert r["fidelity"]["comparison"]["outputs"][0]["metrics"]["top1_agreement"] > 0.5
    assert r["preprocess"]["pre_process"] == "default"
    # the host profile's choice (U8S8 without VNNI saturates: 7-bit weights), and the written weights obey it
    assert r["reduce_range"] == host_profile().quantization.reduce_range
    w8 = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer if t.data_type == TensorProto.INT8]
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in w8) == (64 if r["reduce_range"] else 127)


def test_greedy_fallback_excludes_sensitive_nodes(tiny_onnx, mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = QuantizeConfig(mode="static", method="minmax", format="qdq", activation_type="uint8", metric="mse",
                         max_drop=1e-6, allow_slower=True)
    try:
        res = quantize(tiny_onnx, cfg, out=tmp_path / "q.onnx", calibration=mnist_small["calib"],
                       eval_data=mnist_small["eval"])
        excluded = res.report.excluded_nodes
        assert res.report.exclusion_speed_cost is not None
    except ValidationError as exc:  # budget not reachable: exit 1, the report names what was tried
        excluded = exc.report["excluded_nodes"]
        assert not (tmp_path / "q.onnx").exists()
    assert excluded and all("sensitivity" in e["reason"] for e in excluded)


def test_unknown_exclude_is_config_error(tiny_onnx, mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        quantize(tiny_onnx, QuantizeConfig(exclude=("no_such_node",)), out=tmp_path / "q.onnx",
                 calibration=mnist_small["calib"])
    assert os.listdir(tmp_path) == []


def test_out_must_differ_from_input(tiny_onnx, mnist_small):
    with pytest.raises(ConfigError, match="differ"):
        quantize(tiny_onnx, QuantizeConfig(), out=tiny_onnx, calibration=mnist_small["calib"])


def test_foreign_target_takes_its_preferences_without_timing(tiny_onnx, mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = quantize(tiny_onnx, QuantizeConfig(method="minmax"), out=tmp_path / "q.onnx",
                   calibration=mnist_small["calib"], target="ios-arm64")
    r = res.report
    from edgecompress.targets import get_target

    prefs = get_target("ios-arm64").quantization
    assert r.speed["measured"] is False and "not this machine" in r.speed["note"]
    assert (r.format, r.activation_type, r.per_channel) == (prefs.format, prefs.activation_type, prefs.per_channel)
    # no format / type variants are timed: the target's candidate, and its re-rounded twin when rounding ran
    labels = [c["label"] for c in r.candidates]
    assert r.target == "ios-arm64" and len(labels) <= 2, labels
    assert all(lab.removesuffix(" +rounding") == labels[0] for lab in labels), labels


def test_compute_only_inside_control_flow_is_refused(tmp_path):
    """A model whose layers all sit inside an If (a real VAD model does this per sample rate): ONNX Runtime's
    quantizer leaves the bodies fp32, so int8 would write the same model, larger; refused, nothing written."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgecompress.errors import UnsupportedError

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32), "w")
    vi = helper.make_tensor_value_info

    def branch(name):
        return helper.make_graph([helper.make_node("MatMul", ["x", "w"], [f"{name}_y"])], name, [],
                                 [vi(f"{name}_y", TensorProto.FLOAT, [1, 4])])

    g = helper.make_graph([helper.make_node("If", ["flag"], ["y"], then_branch=branch("a"), else_branch=branch("b"))],
                          "g", [vi("x", TensorProto.FLOAT, [1, 8]), vi("flag", TensorProto.BOOL, [])],
                          [vi("y", TensorProto.FLOAT, [1, 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp_path / "if.onnx"
    onnx.save(m, str(src))
    np.savez(tmp_path / "c.npz", x=np.ones((4, 1, 8), np.float32), flag=np.ones((4,), bool))
    out = tmp_path / "q.onnx"
    with pytest.raises(UnsupportedError, match="inside If/Loop/Scan bodies") as e:
        quantize(str(src), QuantizeConfig(), out=out, calibration=str(tmp_path / "c.npz"))
    assert e.value.exit_code == 2 and not out.exists()
