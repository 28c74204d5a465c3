"""Intermediate tensors exposed as extra outputs of a session; the caller's model is left as it was."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from edgecompress.onnxgraph.extra_outputs import session_with_outputs


def test_session_exposes_intermediate_and_keeps_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
                          "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    before = m.SerializeToString()
    sess = session_with_outputs(m, ["r", "y"], origin="test model")
    assert [o.name for o in sess.get_outputs()] == ["y", "r"]
    r, y_ = sess.run(["r", "y"], {"x": np.array([[-1.0, 0.5, 2.0]], np.float32)})
    np.testing.assert_array_equal(r, [[0.0, 0.5, 2.0]])
    np.testing.assert_array_equal(y_, [[0.0, -0.5, -2.0]])
    assert m.SerializeToString() == before
