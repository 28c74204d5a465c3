"""ExportConfig validation and the --input / --dynamic grammar."""

from __future__ import annotations

import pytest

from edgecompress.errors import ConfigError
from edgecompress.export import ExportConfig, parse_dynamic, parse_input


def test_parse_input_forms():
    s = parse_input("input:1x3x224x224")
    assert (s.name, s.shape, s.dtype, s.dynamic) == ("input", (1, 3, 224, 224), "float32", {})
    s = parse_input("ids:batchxseq=16:int64")
    assert (s.shape, s.dtype, s.dynamic) == ((2, 16), "int64", {0: "batch", 1: "seq"})
    assert s.onnx_shape() == ("batch", "seq")
    assert parse_input("x:1,8").shape == (1, 8)


@pytest.mark.parametrize("spec,match", [
    ("input", "NAME:SHAPE"),
    (":1x3", "NAME:SHAPE"),
    ("x:", "NAME:SHAPE"),
    ("x:1x3:float32:extra", "NAME:SHAPE"),
    ("x:1x0x3", "positive"),
    ("x:1x-3", "bad dimension"),
    ("x:1x3.5", "bad dimension"),
    ("x:seq=0x3", "bad dimension"),
    ("x:1x3:floaty", "unknown dtype"),
    ("x:1x3:str", "not a numeric"),
])
def test_bad_input_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        ExportConfig(inputs=(spec,))


def test_dynamic_merges_and_single_input_shorthand():
    cfg = ExportConfig(inputs=("x:1x8x16",), dynamic=("0=batch,1=seq",))
    assert cfg.input_specs()[0].dynamic == {0: "batch", 1: "seq"}
    cfg = ExportConfig(inputs=("a:1x4", "b:1x4"), dynamic=("b:0=batch",))
    assert [s.dynamic for s in cfg.input_specs()] == [{}, {0: "batch"}]
    assert parse_dynamic("x:1=seq", ["x"]) == ("x", {1: "seq"})


@pytest.mark.parametrize("kw,match", [
    ({"inputs": ("x:1x4", "x:1x4")}, "inputs: duplicate"),
    ({"inputs": ("a:1x4", "b:1x4"), "dynamic": ("0=batch",)}, "dynamic: .* must name the input"),
    ({"inputs": ("x:1x4",), "dynamic": ("y:0=batch",)}, "dynamic: .*names input 'y'"),
    ({"inputs": ("x:1x4",), "dynamic": ("x:5=batch",)}, "dynamic: .*axis 5 out of range"),
    ({"inputs": ("x:1x4",), "dynamic": ("x:0",)}, "dynamic: .*AXIS=NAME"),
    ({"inputs": ("x:1x4",), "dynamic": ("x:a=b",)}, "dynamic: .*AXIS=NAME"),
    ({"dynamic": ("0=batch",)}, "dynamic: needs inputs"),
    ({"opset": 3}, "opset"),
    ({"opset": "17"}, "opset"),
    ({"tolerance": 0}, "tolerance"),
    ({"tolerance": 2.0}, "tolerance"),
    ({"tolerance": "small"}, "tolerance"),
    ({"samples": 0}, "samples"),
    ({"samples": True}, "samples"),
    ({"data_samples": -1}, "data_samples"),
    ({"seed": 1.5}, "seed"),
    ({"exporter": "onnxscript"}, "exporter"),
    ({"output_names": ("a", "a")}, "output_names"),
    ({"output_names": ("",)}, "output_names"),
    ({"weights": "  "}, "weights"),
])
def test_config_validation_table(kw, match):
    with pytest.raises(ConfigError, match=match):
        ExportConfig(**kw)


def test_defaults():
    cfg = ExportConfig(inputs=["x:1x4"])
    assert cfg.inputs == ("x:1x4",) and cfg.tolerance == 1e-4 and cfg.exporter == "auto"
