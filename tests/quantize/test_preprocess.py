"""Pre-passes: transformer fusion before quantizing (no decomposed LayerNorm left), quant_pre_process, BN folding."""

from __future__ import annotations

import onnx
import pytest
import torch
from quantize_helpers import DepthwiseNet, export

from edgecompress.errors import ModelError
from edgecompress.quantize.preprocess import _decomposed_layernorm, check_not_quantized, is_transformer, prepare


def test_transformer_is_fused_before_quantizing(tmp_path):
    from examples import zoo

    torch.manual_seed(0)
    src = export(zoo.tiny_transformer(), tmp_path / "tt.onnx")
    m = onnx.load(str(src))
    assert is_transformer(m)
    res = prepare(m, src, tmp_path)
    fused = onnx.load(str(res.path))
    ops = {n.op_type for n in fused.graph.node}
    assert res.transformer_fusions, res.fallbacks
    assert ops & {"LayerNormalization", "SkipLayerNormalization"}
    assert _decomposed_layernorm(fused) == 0
    assert res.pre_process in ("default", "auto_merge", "skip_symbolic_shape")
    assert src.read_bytes() == (tmp_path / "tt.onnx").read_bytes()  # input untouched


def test_cnn_is_not_a_transformer_and_batchnorm_is_folded(tmp_path):
    src = tmp_path / "dw.onnx"
    torch.onnx.export(DepthwiseNet().eval(), torch.randn(1, 1, 28, 28), str(src), input_names=["input"],
                      dynamo=False, opset_version=17, do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load(str(src))
    assert not is_transformer(m)
    assert any(n.op_type == "BatchNormalization" for n in m.graph.node)
    res = prepare(m, src, tmp_path)
    after = onnx.load(str(res.path))
    assert not any(n.op_type == "BatchNormalization" for n in after.graph.node)
    assert res.batchnorm_folded == sum(n.op_type == "BatchNormalization" for n in m.graph.node)


def test_already_quantized_is_refused(tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    src = export(DepthwiseNet(), tmp_path / "m.onnx")
    quantize_dynamic(str(src), str(tmp_path / "q.onnx"))
    with pytest.raises(ModelError, match="already quantized"):
        check_not_quantized(onnx.load(str(tmp_path / "q.onnx")), "q.onnx")
