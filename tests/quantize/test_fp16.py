"""fp16 conversion (edgecompress.quantize.fp16): real ONNX Runtime sessions on small graphs built with onnx.helper.

The emulated test runs the fp16 graph under qemu-user with the aarch64 onnxruntime wheel (its real fp16
kernels; about 5 s) and is skipped when the arm64 root is not prepared (`edgecompress bench --setup-emulation`).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from edgecompress.bench.emulation import root_info
from edgecompress.errors import ConfigError, DataError, UnsupportedError, ValidationError
from edgecompress.onnxgraph.runtime import make_session
from edgecompress.quantize.fp16 import EMULATION, HOST, KEEP_FP32_OPS, convert_fp16

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _model(nodes, inits, inputs, outputs, opset=17) -> onnx.ModelProto:
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                     [h.make_tensor_value_info(n, t, None) for n, t in outputs], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _w(rng, name, *shape, scale=0.1):
    return nh.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


@pytest.fixture(scope="module")
def block():
    """Conv -> Relu -> reshape -> MatMul+Add -> LayerNorm -> MatMul -> Softmax, 4 random feeds."""
    rng = np.random.default_rng(0)
    nodes = [h.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             h.make_node("Relu", ["c"], ["r"], name="relu"),
             h.make_node("Reshape", ["r", "shp"], ["t"], name="reshape"),  # [1, 32, 64]
             h.make_node("MatMul", ["t", "w1"], ["m1"], name="fc1"),
             h.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
             h.make_node("LayerNormalization", ["a1", "g", "be"], ["ln"], axis=-1, name="ln"),
             h.make_node("MatMul", ["ln", "w2"], ["m2"], name="fc2"),
             h.make_node("Softmax", ["m2"], ["y"], axis=-1, name="softmax")]
    inits = [_w(rng, "cw", 32, 3, 3, 3, scale=0.3), _w(rng, "cb", 32), nh.from_array(np.array([1, 32, 64]), "shp"),
             _w(rng, "w1", 64, 256), _w(rng, "b1", 256), nh.from_array(np.ones(256, np.float32), "g"),
             nh.from_array(np.zeros(256, np.float32), "be"), _w(rng, "w2", 256, 256, scale=0.2)]
    m = _model(nodes, inits, [("x", F32, [1, 3, 8, 8])], [("y", F32)])
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    return m, feeds


def _inputs_dtype(m: onnx.ModelProto, node_name: str) -> int:
    """The element type of a node's first input in the converted model (graph inputs, initializers, Casts)."""
    node = next(n for n in m.graph.node if n.name == node_name)
    src = node.input[0]
    inits = {t.name: t.data_type for t in m.graph.initializer}
    if src in inits:
        return inits[src]
    producer = next((n for n in m.graph.node if src in n.output), None)
    if producer is not None and producer.op_type == "Cast":
        return next(a.i for a in producer.attribute if a.name == "to")
    vi = {v.name: v.type.tensor_type.elem_type for v in (*m.graph.value_info, *m.graph.input)}
    return vi[src]


def test_keep_list_covers_onnxruntimes_default():
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    assert set(DEFAULT_OP_BLOCK_LIST) <= set(KEEP_FP32_OPS)
    assert {"Softmax", "LayerNormalization", "SkipLayerNormalization", "ReduceMean", "Pow", "Exp"} <= set(KEEP_FP32_OPS)
    assert "Erf" not in KEEP_FP32_OPS and len(set(KEEP_FP32_OPS)) == len(KEEP_FP32_OPS)


def test_small_block_host(block):
    m, feeds = block
    before = m.SerializeToString()
    m16, res = convert_fp16(m, feeds, emulate=False)
    assert m.SerializeToString() == before  # the input model is left as it was
    onnx.checker.check_model(m16)
    make_session(m16.SerializeToString())
    weights = {t.name: t.data_type for t in m16.graph.initializer}
    assert weights["w1"] == weights["w2"] == weights["cw"] == F16
    assert res.size_after < 0.55 * res.size_before  # 4-byte weights become 2-byte ones
    assert res.kept_nodes == {"ln": "rule", "softmax": "rule"}
    assert res.kept_ops == {"rule": {"LayerNormalization": 1, "Softmax": 1}}
    assert res.converted_nodes == 6
    assert _inputs_dtype(m16, "ln") == F32 and _inputs_dtype(m16, "softmax") == F32
    assert _inputs_dtype(m16, "fc1") == F16 and _inputs_dtype(m16, "conv") == F16
    assert [i.type.tensor_type.elem_type for i in (*m16.graph.input, *m16.graph.output)] == [F32, F32]
    (p,) = res.parity
    assert p.where == res.judged_on == HOST and res.notes  # x86: fp16 storage, fp32 compute, said so
    assert 0 < p.max_rel < 1e-2 and p.cosine > 0.9999
    assert json.loads(json.dumps(res.to_dict()))["kept_ops"]["rule"]["Softmax"] == 1


@pytest.mark.skipif(root_info() is None, reason="arm64 emulation root not prepared")
def test_small_block_emulated_arm64(block):
    m, feeds = block
    m16, res = convert_fp16(m, feeds, emulate=True)
    by_where = {p.where: p for p in res.parity}
    assert res.judged_on == EMULATION and set(by_where) == {HOST, EMULATION} and not res.notes
    emu = by_where[EMULATION]
    assert emu.max_rel < 1e-2 and emu.cosine > 0.999
    # the aarch64 EP computes in fp16 (the host only stores fp16): its error is the larger one
    assert emu.max_abs > by_where[HOST].max_abs


def test_huge_intermediate_kept_by_range():
    rng = np.random.default_rng(1)
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"], name="fc"),
             h.make_node("Mul", ["m", "big"], ["scaled"], name="scale"),  # |x| ~ 1e6: inf in fp16
             h.make_node("ReduceSum", ["scaled", "ax"], ["s"], keepdims=1, name="sum"),
             h.make_node("Div", ["s", "big"], ["d"], name="unscale"),
             h.make_node("Add", ["d", "m"], ["y"], name="out")]
    inits = [_w(rng, "w", 16, 16, scale=1.0), nh.from_array(np.array(1e6, np.float32), "big"),
             nh.from_array(np.array([-1]), "ax")]
    m = _model(nodes, inits, [("x", F32, [1, 16])], [("y", F32)])
    feeds = [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(3)]
    m16, res = convert_fp16(m, feeds, emulate=False)
    assert res.kept_nodes["sum"] == "rule"
    assert res.kept_nodes["scale"].startswith("range: output scaled max|x|")
    assert res.kept_nodes["unscale"].startswith("range: input")  # it reads the huge sum
    assert "fc" not in res.kept_nodes and "out" not in res.kept_nodes
    assert res.kept_ops["range"] == {"Mul": 1, "Div": 1}
    assert res.parity[0].max_rel < 1e-2 and np.isfinite(res.parity[0].max_abs)
    weights = {t.name: t for t in m16.graph.initializer}
    assert weights["big"].data_type == F32 and nh.to_array(weights["big"]) == 1e6  # fp16 would clamp it to 65504
    assert weights["w"].data_type == F16


def _cancellation_model():
    """(x + 1000) - 1000: fp16 math keeps the sum to 0.5, far off the fp32 result, though every value is in range."""
    nodes = [h.make_node("Add", ["x", "k"], ["a"], name="add"), h.make_node("Sub", ["a", "k"], ["s"], name="sub"),
             h.make_node("Mul", ["s", "two"], ["y"], name="double")]
    inits = [nh.from_array(np.array(1000.0, np.float32), "k"), nh.from_array(np.array(2.0, np.float32), "two")]
    return _model(nodes, inits, [("x", F32, [1, 64])], [("y", F32)])


def test_error_fallback_keeps_the_nodes_that_add_error():
    """h*1000.1 - h*1000: the weight 1000.1 rounds to 1000 in fp16 (output off by 100 %), no range problem. The
    Sub amplifies its inputs' rounding, so it and the Muls that feed it go back to fp32; fc and double stay fp16."""
    rng = np.random.default_rng(2)
    nodes = [h.make_node("MatMul", ["x", "w0"], ["h"], name="fc"), h.make_node("Mul", ["h", "k1"], ["a"], name="mul1"),
             h.make_node("Mul", ["h", "k2"], ["b"], name="mul2"), h.make_node("Sub", ["a", "b"], ["s"], name="sub"),
             h.make_node("Mul", ["s", "two"], ["y"], name="double")]
    inits = [_w(rng, "w0", 64, 64, scale=0.2), nh.from_array(np.array(1000.1, np.float32), "k1"),
             nh.from_array(np.array(1000.0, np.float32), "k2"), nh.from_array(np.array(2.0, np.float32), "two")]
    m = _model(nodes, inits, [("x", F32, [1, 64])], [("y", F32)])
    feeds = [{"x": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(2)]
    m16, res = convert_fp16(m, feeds, emulate=False, step=1)
    assert res.rounds == 2 and res.kept_nodes["sub"].startswith("error: output rel err 1")
    assert res.kept_nodes["mul1"].startswith("error: feeds sub, which amplifies")
    assert res.kept_ops == {"error": {"Sub": 1, "Mul": 2}} and res.converted_nodes == 2
    assert res.parity[0].max_rel < 1e-2
    assert {t.name: t.data_type for t in m16.graph.initializer} == {"w0": F16, "k1": F32, "k2": F32, "two": F16}


@pytest.mark.skipif(root_info() is None, reason="arm64 emulation root not prepared")
def test_error_fallback_on_arm64_fp16_math():
    """The x86 EP runs (x + 1000) - 1000 in fp32 (no error to see); the aarch64 fp16 kernels lose x."""
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(2)]
    m16, res = convert_fp16(_cancellation_model(), feeds, emulate=True, step=1)
    assert res.kept_nodes.keys() == {"add", "sub"} and res.converted_nodes == 1 and res.rounds == 2
    emu = next(p for p in res.parity if p.where == EMULATION)
    assert emu.max_rel < 1e-2


def test_error_fallback_that_needs_everything_fp32_raises():
    """x * 0.1 with a 1e-6 budget: 0.1 rounds to 0.0999756 in fp16, only fp32 meets it."""
    m = _model([h.make_node("Mul", ["x", "k"], ["y"])], [nh.from_array(np.array(0.1, np.float32), "k")],
               [("x", F32, [1, 8])], [("y", F32)])
    with pytest.raises(ValidationError, match="until every float node is fp32"):
        convert_fp16(m, [{"x": np.ones((1, 8), np.float32)}], threshold=1e-6, emulate=False)


def test_bad_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8))
    half = _model([h.make_node("Relu", ["x"], ["y"])], [], [("x", F16, [1, 8])], [("y", F16)])
    with pytest.raises(UnsupportedError, match="already has float16"):
        convert_fp16(half, [{"x": x.astype(np.float16)}], emulate=False)
    ints = _model([h.make_node("Add", ["x", "x"], ["y"])], [], [("x", TensorProto.INT64, [1, 8])],
                  [("y", TensorProto.INT64)])
    with pytest.raises(UnsupportedError, match="no float32 compute"):
        convert_fp16(ints, [{"x": np.arange(8)[None]}], emulate=False)
    relu = _model([h.make_node("Relu", ["x"], ["y"])], [], [("x", F32, [1, 8])], [("y", F32)])
    with pytest.raises(DataError, match="no feeds"):
        convert_fp16(relu, [], emulate=False)
    with pytest.raises(ConfigError, match="threshold"):
        convert_fp16(relu, [{"x": x.astype(np.float32)}], threshold=-1.0, emulate=False)


def test_quantize_precision_fp16_for_an_arm_target(block, tmp_path):
    """The stage: `quantize --precision fp16 --target rpi5-cortex-a76` writes the fp16 model, lists what stayed fp32,
    and compares it with fp32 on held-out data; a target without fp16 is refused before any work."""
    from edgecompress.errors import TargetError
    from edgecompress.quantize import QuantizeConfig, quantize

    m = onnx.ModelProto()
    m.CopyFrom(block[0])
    out_vi = m.graph.output[0]
    out_vi.CopyFrom(h.make_tensor_value_info(out_vi.name, F32, [1, 32, 256]))  # the checker wants a shape
    src = tmp_path / "block.onnx"
    onnx.save(m, str(src))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    np.savez(tmp_path / "ev.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "block.fp16.onnx"
    r = quantize(src, QuantizeConfig(precision="fp16"), out=out, calibration=tmp_path / "cal.npz",
                 eval_data=tmp_path / "ev.npz", target="rpi5-cortex-a76").report
    assert r.mode == "fp16" and out.stat().st_size < 0.6 * src.stat().st_size
    rule = r.conversion["kept_ops"]["rule"]
    assert rule.get("Softmax") == 1 and rule.get("LayerNormalization") == 1
    assert r.conversion["worst_rel"] < 1e-2 and r.fidelity["drop"] < 1e-2
    assert not r.speed["measured"]
    with pytest.raises(TargetError, match="precision fp16 is for targets"):
        quantize(src, QuantizeConfig(precision="fp16"), out=tmp_path / "x.onnx", calibration=tmp_path / "cal.npz",
                 target="host")
    assert not (tmp_path / "x.onnx").exists()
