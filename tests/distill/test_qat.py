"""--qat: fake-quant fine-tuning under the teacher, QDQ ONNX export that ONNX Runtime runs with int8 kernels."""

from __future__ import annotations

import numpy as np
import onnx

from edgecompress.distill import DistillConfig, distill
from edgecompress.onnxgraph.runtime import make_session

from .conftest import MNIST, spec


def test_qat_exports_int8_model_close_to_fp32(mnist_small, tmp_path):
    train, val = mnist_small
    cfg = DistillConfig(teacher=spec("mlp_teacher"), student=f"{MNIST}:student_small", epochs=2, batch_size=32,
                        qat=True, qat_epochs=1, seed=0)
    r = distill(cfg, data=train, val=val, out=tmp_path / "s.pt")
    q = r.report.qat
    assert q["int8_ops"].get("QLinearConv", 0) == 2 and q["int8_ops"].get("QGemm", 0) == 1, q
    path = tmp_path / "s.int8.onnx"
    assert q["onnx"] == str(path) and path.is_file()
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the int8 model in ORT agrees with the fake-quant model trained in torch and stays near the fp32 student
    assert abs(q["int8_val_metric"] - q["fake_quant_val_metric"]) <= 0.02, q
    assert q["drop_vs_fp32"] <= 0.03, q
    sess = make_session(path)
    x = np.load(val)["input"][:3]
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (3, 10)
