"""inspect(path): I/O, opset, op histogram, params, MACs, quantization state, size, external data."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgecompress.cli import cli
from edgecompress.errors import ModelError
from edgecompress.onnxgraph.inspect import human_bytes, human_count, inspect


def mlp_model(batch="N") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(32, np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 10)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["logits"], name="fc2")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 64])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], [w1, b1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    m.ir_version = 8
    return m


def test_inspect_float_model(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(mlp_model(), p)
    r = inspect(p)
    assert r.inputs == [{"name": "x", "shape": ["N", 64], "dtype": "float32"}]
    assert r.outputs == [{"name": "logits", "shape": ["N", 10], "dtype": "float32"}]
    assert r.opset == 17 and r.opsets == {"ai.onnx": 17} and r.producer == "test"
    assert r.op_histogram == {"MatMul": 2, "Add": 1, "Relu": 1}
    assert r.params == 64 * 32 + 32 + 320 and r.params_bytes == 4 * r.params
    assert r.macs.total == 64 * 32 + 32 * 10 and r.macs.by_op_type == {"MatMul": 2368}
    assert r.symbolic_dims == ["N"] and any("'N'" in s for s in r.macs.symbolic)
    assert r.quantization == "none" and r.int8 == {}
    assert r.file_size_bytes == p.stat().st_size == r.total_size_bytes
    assert r.external_data == [] and r.checker == "ok"
    json.dumps(r.to_dict())


def test_inspect_external_data(tmp_path):
    p = tmp_path / "ext.onnx"
    onnx.save(mlp_model(4), p, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)
    r = inspect(p)
    assert r.external_data == [{"location": "ext.data", "tensors": 3, "bytes": (tmp_path / "ext.data").stat().st_size}]
    assert r.total_size_bytes == r.file_size_bytes + r.external_data[0]["bytes"]
    assert r.params == 64 * 32 + 32 + 320 and r.macs.total == 4 * 2368 and r.symbolic_dims == []
    (tmp_path / "ext.data").unlink()
    with pytest.raises(ModelError, match="external data file 'ext.data'"):
        inspect(p)


def test_inspect_quantized_model(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": np.random.default_rng(i).standard_normal((1, 64)).astype(np.float32)}
                            for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    onnx.save(mlp_model(1), tmp_path / "f.onnx")
    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), weight_type=QuantType.QInt8)
    r = inspect(tmp_path / "q.onnx")
    assert r.quantization == "qdq"
    assert r.int8["int8"] == 2 and r.int8["total"] == 2 and r.int8["int8_fraction"] == 1.0
    assert r.macs.total == 2368


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"this is not a model at all \x00\xff" * 10, "not a valid ONNX protobuf|empty graph"),
    (b"\x08\x07", "empty graph|no opset"),
])
def test_inspect_corrupt_files(tmp_path, content, match):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelError, match=match):
        inspect(p)


def test_inspect_truncated_file(tmp_path):
    data = mlp_model().SerializeToString()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        inspect(p)


def test_inspect_cli_json_and_table(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(mlp_model(), p)
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(p), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["macs"]["total"] == 2368 and "per_node" not in d["macs"]
    res = runner.invoke(cli, ["inspect", str(p), "--json", "--per-node"])
    assert json.loads(res.stdout)["macs"]["per_node"] == {"fc1": 2048, "fc2": 320}
    res = runner.invoke(cli, ["inspect", str(p), "--per-node"])
    assert res.exit_code == 0 and res.stdout == ""
    assert "MatMul" in res.stderr and "symbolic dims: N" in res.stderr


def test_human_units():
    assert human_count(12_345_678) == "12.3M" and human_count(999) == "999"
    assert human_bytes(2_500_000) == "2.5 MB" and human_bytes(12) == "12 B"


def test_inspect_dim_values(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(mlp_model(), p)
    assert inspect(p, dim_values={"N": 4}).macs.total == 4 * 2368
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(p), "--dim", "N=4", "--json"])
    d = json.loads(res.stdout)
    assert d["macs"]["total"] == 4 * 2368 and d["dim_values"] == {"N": 4} and d["macs"]["symbolic"] == []
    for bad in ("N", "N=0", "M=4", "=3"):
        res = runner.invoke(cli, ["inspect", str(p), "--dim", bad])
        assert res.exit_code == 2 and res.stderr.startswith("error:"), (bad, res.stderr)
