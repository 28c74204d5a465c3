"""op_histogram / count_params / count_macs / quant_state / int8_census on small hand-built and ORT-quantized graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecompress.onnxgraph.census import consumers, count_macs, count_params, int8_census, op_histogram, quant_state


def _init(name: str, shape, seed: int = 0) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


def _model(nodes, inputs, outputs, inits, opset: int = 17, extra_opsets=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def small_cnn(batch="N") -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(4,3x3,pad1) -> Relu -> depthwise Conv(4,g4) -> Flatten -> Gemm(256->10)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=4),
        helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("w1", (4, 3, 3, 3)), _init("b1", (4,)), _init("w2", (4, 1, 3, 3), 1),
             _init("wfc", (10, 256), 2), _init("bfc", (10,))]
    return _model(nodes, [_vi("x", [batch, 3, 8, 8])], [_vi("y", [batch, 10])], inits)


CNN_MACS = {"conv1": 4 * 64 * 3 * 9, "dw": 4 * 64 * 1 * 9, "fc": 256 * 10}


def test_histogram_qualifies_non_default_domains():
    m = small_cnn()
    m.graph.node.append(helper.make_node("FusedGemm", ["f", "wfc"], ["z"], domain="com.microsoft", name="fg"))
    hist = op_histogram(m)
    assert hist == {"Conv": 2, "Flatten": 1, "Gemm": 1, "Relu": 1, "com.microsoft.FusedGemm": 1}
    assert list(hist)[0] == "Conv"  # most frequent first


def test_consumers_one_entry_per_use():
    m = small_cnn()
    m.graph.node.append(helper.make_node("Add", ["r1", "r1"], ["s"], name="twice"))
    readers = consumers(m.graph)
    assert [n.name for n in readers["r1"]] == ["dw", "twice", "twice"]
    assert [n.name for n in readers["x"]] == ["conv1"] and "y" not in readers


def test_histogram_counts_subgraph_nodes():
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [_vi("t", [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_vi("e", [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    m = _model([node], [_vi("c", [], TensorProto.BOOL), _vi("x", [2])], [_vi("y", [2])], [])
    assert op_histogram(m) == {"If": 1, "Neg": 1, "Relu": 1}


def test_count_params_initializers_and_constants():
    m = small_cnn()
    assert count_params(m) == 4 * 27 + 4 + 4 * 9 + 2560 + 10
    m.graph.node.insert(0, helper.make_node("Constant", [], ["k"], value=_init("kv", (3, 5))))
    assert count_params(m) == 4 * 27 + 4 + 4 * 9 + 2560 + 10 + 15


def test_count_macs_cnn_and_symbolic_batch():
    rep = count_macs(small_cnn("N"))
    assert rep.per_node == CNN_MACS
    assert rep.total == sum(CNN_MACS.values())
    assert rep.by_op_type == {"Conv": CNN_MACS["conv1"] + CNN_MACS["dw"], "Gemm": CNN_MACS["fc"]}
    assert any("'N'" in s for s in rep.symbolic), rep.symbolic
    static = count_macs(small_cnn(2))
    assert static.total == 2 * rep.total and static.symbolic == []
    assert rep.to_dict()["total"] == rep.total


def test_count_macs_matmul_broadcast_convtranspose_and_unknown():
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["m"], name="mm"),  # [B,S,8] x [8,3]
        helper.make_node("MatMul", ["a", "bt"], ["att"], name="bmm"),  # [B,S,8] x [B,8,S]
        helper.make_node("ConvTranspose", ["img", "wt"], ["up"], name="up", strides=[2, 2]),
        helper.make_node("MatMul", ["u", "w"], ["um"], name="unknown"),
    ]
    inits = [_init("w", (8, 3)), _init("wt", (2, 5, 3, 3))]
    m = _model(nodes, [_vi("a", [2, "seq", 8]), _vi("bt", [2, 8, "seq"]), _vi("img", [1, 2, 4, 4]),
                       helper.make_tensor_value_info("u", TensorProto.FLOAT, None)],
               [_vi("m", None), _vi("att", None), _vi("up", None), _vi("um", None)], inits)
    rep = count_macs(m)
    assert rep.per_node["mm"] == 2 * 1 * 8 * 3  # seq counted as 1
    assert rep.per_node["bmm"] == 2 * 1 * 8 * 1
    assert rep.per_node["up"] == 1 * 2 * 16 * 5 * 9
    assert "unknown" not in rep.per_node and any(u.startswith("unknown") for u in rep.uncounted)
    assert any("'seq'" in s and "mm" in s for s in rep.symbolic)


def test_count_macs_quantized_forms_match_float():
    """QLinearConv / MatMulInteger take the weight from the right input position."""
    q = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "wq")
    sc = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.uint8), "z")
    zw = numpy_helper.from_array(np.array(0, np.int8), "zw")
    wm = numpy_helper.from_array(np.ones((16, 5), np.int8), "wm")
    nodes = [helper.make_node("QLinearConv", ["x", "s", "z", "wq", "s", "zw", "s", "z"], ["y"], name="qc",
                              pads=[1, 1, 1, 1]),
             helper.make_node("MatMulInteger", ["a", "wm", "z", "zw"], ["o"], name="mi")]
    m = _model(nodes, [_vi("x", [1, 3, 8, 8], TensorProto.UINT8), _vi("a", [2, 16], TensorProto.UINT8)],
               [_vi("y", None, TensorProto.UINT8), _vi("o", None, TensorProto.INT32)], [q, sc, zp, zw, wm])
    rep = count_macs(m)
    assert rep.per_node == {"qc": CNN_MACS["conv1"], "mi": 2 * 16 * 5}
    assert rep.by_op_type == {"QLinearConv": CNN_MACS["conv1"], "MatMulInteger": 160}
    assert count_params(m, exclude_quant_params=True) == 4 * 27 + 80
    assert quant_state(m) == "qoperator"


# -------------------------------------------------------------------- real ORT quantization: qdq/qoperator/dynamic


class _Reader:
    def __init__(self, n: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.it = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(n)])

    def get_next(self):
        return next(self.it, None)


@pytest.fixture(scope="module")
def float_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("census") / "f.onnx"
    onnx.save(small_cnn(1), p)
    return p


def _static(src, dst, fmt, exclude=()):
    from onnxruntime.quantization import QuantType, quantize_static

    quantize_static(str(src), str(dst), _Reader(), quant_format=fmt, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude))
    return onnx.load(str(dst))


def test_quant_state_and_int8_census_on_ort_outputs(float_path, tmp_path):
    from onnxruntime.quantization import QuantFormat, quantize_dynamic

    f = onnx.load(str(float_path))
    assert quant_state(f) == "none"
    c = int8_census(f)
    assert (c["int8"], c["float"], c["total"]) == (0, 3, 3) and c["int8_fraction"] == 0.0

    qdq = _static(float_path, tmp_path / "qdq.onnx", QuantFormat.QDQ)
    assert quant_state(qdq) == "qdq"
    c = int8_census(qdq)
    assert c["by_op_type"]["Conv"] == {"int8": 2, "float": 0}
    assert c["by_op_type"]["Gemm"] == {"int8": 1, "float": 0}
    assert c["int8_fraction"] == 1.0

    qop = _static(float_path, tmp_path / "qop.onnx", QuantFormat.QOperator)
    assert quant_state(qop) == "qoperator"
    assert int8_census(qop)["int8"] == 3

    part = _static(float_path, tmp_path / "part.onnx", QuantFormat.QDQ, exclude=["fc"])
    c = int8_census(part)
    assert c["float_nodes"] == ["fc"] and c["int8"] == 2

    quantize_dynamic(str(float_path), str(tmp_path / "dyn.onnx"))
    dyn = onnx.load(str(tmp_path / "dyn.onnx"))
    assert quant_state(dyn) == "dynamic"
    c = int8_census(dyn)  # ConvInteger x2, MatMulInteger (the Gemm)
    assert (c["by_op_type"]["Conv"], c["by_op_type"]["MatMul"]) == ({"int8": 2, "float": 0}, {"int8": 1, "float": 0})
    assert count_macs(dyn).total == sum(CNN_MACS.values())
    from edgecompress.onnxgraph.runtime import make_session

    make_session(tmp_path / "dyn.onnx", optimized_path=str(tmp_path / "dyn_opt.onnx"))
    opt = onnx.load(str(tmp_path / "dyn_opt.onnx"))  # ORT fuses to com.microsoft.DynamicQuantizeMatMul
    assert quant_state(opt) == "dynamic" and int8_census(opt)["int8"] == 3
    assert count_macs(opt).total == sum(CNN_MACS.values())


def test_int8_census_on_ort_optimized_graph(tmp_path, float_path):
    from onnxruntime.quantization import QuantFormat

    from edgecompress.onnxgraph.runtime import make_session

    _static(float_path, tmp_path / "qdq.onnx", QuantFormat.QDQ, exclude=["fc"])
    opt = tmp_path / "opt.onnx"
    make_session(tmp_path / "qdq.onnx", optimized_path=str(opt))
    om = onnx.load(str(opt))
    assert any(n.op_type == "QLinearConv" for n in om.graph.node), op_histogram(om)
    c = int8_census(om)
    assert c["by_op_type"]["Conv"]["int8"] == 2
    assert c["int8"] == 2 and c["float"] == 1
    assert count_macs(om).total == sum(CNN_MACS.values())


def test_int8_census_weight_only_dq_is_float():
    wq = numpy_helper.from_array(np.ones((8, 3), np.int8), "wq")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s"], ["w"]),
             helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")]
    m = _model(nodes, [_vi("a", [2, 8])], [_vi("y", [2, 3])], [wq, s])
    assert quant_state(m) == "qdq"
    c = int8_census(m)
    assert c["float_nodes"] == ["mm"] and c["int8"] == 0


def test_int8_census_reports_16bit_qdq_separately():
    def q(name, src, dtype):
        zp = numpy_helper.from_array(np.array(0, dtype), f"{name}_zp")
        return [helper.make_node("QuantizeLinear", [src, "s", f"{name}_zp"], [f"{name}_q"]),
                helper.make_node("DequantizeLinear", [f"{name}_q", "s", f"{name}_zp"], [f"{name}_dq"])], zp

    n1, z1 = q("a", "a", np.int16)
    n2, z2 = q("w", "w", np.int16)
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = n1 + n2 + [helper.make_node("MatMul", ["a_dq", "w_dq"], ["y"], name="mm")]
    m = _model(nodes, [_vi("a", [2, 8])], [_vi("y", [2, 3])], [_init("w", (8, 3)), s, z1, z2], opset=21)
    c = int8_census(m)
    assert c["other_nodes"] == {"mm": "int16"} and c["int8"] == 0 and c["float"] == 0


def test_count_macs_with_dim_values():
    from edgecompress.errors import ConfigError

    m = small_cnn("N")
    rep = count_macs(m, {"N": 3})
    assert rep.total == 3 * sum(CNN_MACS.values()) and rep.symbolic == []
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # the input model is not modified
    with pytest.raises(ConfigError, match="'seq' is not a symbolic dim.*N"):
        count_macs(m, {"seq": 8})
    with pytest.raises(ConfigError, match="positive integer"):
        count_macs(m, {"N": 0})
