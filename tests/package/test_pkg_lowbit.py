"""package + verify of weight-only low-bit (MatMulNBits, GatherBlockQuantized) and fp16 models made by ONNX
Runtime's own tools: the ORT format conversion works (int4 Gather tables repacked, since ORT format has no int4
type), the reduced-operator config lists the contrib ops, the manifest names the weight format, verify passes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from lowbit_helpers import embed_feeds

from edgecompress.errors import UnsupportedError
from edgecompress.package import PackageConfig, package
from edgecompress.package.config import QUANT_TOLERANCE
from edgecompress.package.ortformat import ort_session, parse_required_operators
from edgecompress.package.ortlowbit import ort_compatible
from edgecompress.package.verify import verify


def _package(lowbit_models, key, out, **cfg):
    data = lowbit_models["embed_data" if key.startswith("embed") else "mlp_data"]
    package(lowbit_models[key], PackageConfig(name=key.replace("_", "-"), version="1.0.0", **cfg), out=out,
            target="host", eval_data=data)
    return json.loads((out / "manifest.json").read_text())


def _verified(path):
    rep = verify(path)
    assert rep.ok, rep.failures
    assert any("model.ort loads" in c for c in rep.checks) and any("weight format" in c for c in rep.checks)
    return rep


def test_int4_matmulnbits_release(lowbit_models, tmp_path):
    m = _package(lowbit_models, "mlp_int4", tmp_path / "rel")
    config = (tmp_path / "rel" / "required_operators.config").read_text()
    assert "com.microsoft;1;MatMulNBits" in config.splitlines()  # a reduced build keeps the op
    assert "MatMulNBits" in parse_required_operators(config)["com.microsoft"]["1"]
    assert m["ort"]["required_operators"]["com.microsoft"]["1"] == ["MatMulNBits"]
    assert m["model"]["weight_format"] == "int4 weight-only, block 32"
    assert m["model"]["quant_state"] == "weight-only"
    w4 = next(r for r in m["model"]["weights"] if r["format"] == "4-bit block 32")
    assert w4["weights"] == 64 * 64 + 64 * 32 and w4["bits_per_weight"] == 5.0 and "names" not in w4
    assert m["sample"]["rel_tol"] == QUANT_TOLERANCE  # was the float 1e-4: arm64 kernels differ by ~1e-2
    assert m["ort"]["weights"]["uint8"]["weights"] == w4["bytes"]  # model.ort keeps the packed weights
    assert "int4 weight-only, block 32" in (tmp_path / "rel" / "MODEL_CARD.md").read_text()
    assert "4-bit block 32" in (tmp_path / "rel" / "report.html").read_text()
    _verified(tmp_path / "rel")
    _verified(tmp_path / "rel.tar.gz")


def test_int4_release_with_type_reduction(lowbit_models, tmp_path):
    _package(lowbit_models, "mlp_int4", tmp_path / "rel", include_types=True, tarball=False)
    lines = (tmp_path / "rel" / "required_operators.config").read_text().splitlines()
    assert any(ln.startswith("com.microsoft;1;") and "MatMulNBits" in ln for ln in lines)
    assert any("{" in ln for ln in lines)  # typed entries present
    _verified(tmp_path / "rel")


def test_fp16_release(lowbit_models, tmp_path):
    m = _package(lowbit_models, "mlp_fp16", tmp_path / "rel")
    assert m["model"]["weight_format"] == "fp16" and m["model"]["quant_state"] == "none"
    assert m["sample"]["rel_tol"] == QUANT_TOLERANCE  # fp16 outputs differ x86 vs arm64 by ~4e-4 of the scale
    assert "Cast" in m["model"]["op_census"]
    # this host's CPU kernels have no fp16 MatMul: the conversion widened the weights, and the release says so
    assert m["ort"]["weights"]["fp32"]["weights"] > m["ort"]["weights"].get("fp16", {}).get("weights", 0)
    assert any("fp32" in n and "fp16" in n for n in m["ort"]["notes"])
    _verified(tmp_path / "rel.tar.gz")


@pytest.mark.parametrize("key", ["embed_int4", "embed_uint4"])
def test_gather_block_quantized_release(lowbit_models, tmp_path, key):
    """ORT's quantizer writes the table as int4 (uint4 + zero points when asymmetric), which ORT format cannot
    hold (before: 'Unsupported tensor data type <unknown> for tensor table_Q4' when loading model.ort)."""
    m = _package(lowbit_models, key, tmp_path / "rel")
    config = (tmp_path / "rel" / "required_operators.config").read_text()
    assert "com.microsoft;1;GatherBlockQuantized,MatMulNBits" in config.splitlines()
    assert any("stored as uint8" in r for r in m["ort"]["rewrites"])
    assert m["model"]["weight_format"] == "int4 weight-only, block 32"
    # model.onnx is the input as given; model.ort holds the packed form and gives the same numbers
    assert onnx.load(str(tmp_path / "rel" / "model.onnx")) == onnx.load(str(lowbit_models[key]))
    ids = embed_feeds(3, seed=1)["ids"]
    a = ort.InferenceSession(str(tmp_path / "rel" / "model.onnx"), providers=["CPUExecutionProvider"])
    b = ort_session(tmp_path / "rel" / "model.ort")
    for i in range(len(ids)):
        np.testing.assert_array_equal(a.run(None, {"ids": ids[i:i + 1]})[0], b.run(None, {"ids": ids[i:i + 1]})[0])
    _verified(tmp_path / "rel.tar.gz")


def test_int4_dequantize_linear_is_refused_with_the_reason():
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.INT4, [4, 4], np.zeros(16, np.int8).tolist())
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"]), helper.make_node("MatMul", ["x", "wf"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, s])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedError, match=r"ORT format cannot hold int4/uint4 tensors.*w \(int4, read by "
                                               r"DequantizeLinear input 0\)"):
        ort_compatible(m)
    fp = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 21)])
    assert ort_compatible(fp) == (fp, [])
