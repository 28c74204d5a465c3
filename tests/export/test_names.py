"""Output names colliding with internal value names ("Duplicate definition of name" in ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecompress.export.names import duplicate_names, fix_duplicate_names


def _session(m: onnx.ModelProto):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _model(nodes, inits, out="logits") -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([1.0, 2.0, 3.0], np.float32)
X = np.ones((1, 4), np.float32)


def test_node_output_defined_twice_is_renamed_and_rewired():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"], name="mm"),
             helper.make_node("Add", ["logits", "b"], ["logits"], name="add")]
    m = _model(nodes, [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    assert duplicate_names(m.graph) == ["logits"]
    with pytest.raises(Exception, match="Duplicate definition"):
        _session(m)
    notes = fix_duplicate_names(m.graph)
    assert len(notes) == 1 and "'logits'" in notes[0]
    assert duplicate_names(m.graph) == []
    assert [o.name for o in m.graph.output] == ["logits"]
    (y,) = _session(m).run(None, {"x": X})
    np.testing.assert_allclose(y, X @ W + B, rtol=1e-6)


def test_output_name_equal_to_an_initializer_name():
    nodes = [helper.make_node("Add", ["x", "out"], ["h"], name="add"),
             helper.make_node("MatMul", ["h", "w"], ["out"], name="mm")]
    bias = np.full((1, 4), 0.5, np.float32)
    m = _model(nodes, [numpy_helper.from_array(bias, "out"), numpy_helper.from_array(W, "w")], out="out")
    with pytest.raises(Exception, match="(?i)duplicate"):
        _session(m)
    fix_duplicate_names(m.graph)
    (y,) = _session(m).run(None, {"x": X})
    np.testing.assert_allclose(y, (X + bias) @ W, rtol=1e-6)
    onnx.checker.check_model(m)


def test_clean_graph_untouched():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"])]
    m = _model(nodes, [numpy_helper.from_array(W, "w")])
    before = m.SerializeToString()
    assert fix_duplicate_names(m.graph) == []
    assert m.SerializeToString() == before
