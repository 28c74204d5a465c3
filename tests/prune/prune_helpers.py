"""Helpers for the prune tests: tiny models from examples/ exported with the TorchScript exporter."""

from __future__ import annotations

import io

import numpy as np
import onnx


def export_model(model, shape, *, keep_bn: bool = False, dynamo: bool = False, path=None) -> onnx.ModelProto:
    import torch

    model.eval()
    x = torch.randn(*shape)
    if dynamo:
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["out"])
        return onnx.load(str(path))
    f = io.BytesIO()
    torch.onnx.export(model, (x,), f, dynamo=False, input_names=["input"], output_names=["out"],
                      do_constant_folding=not keep_bn)
    return onnx.load_from_string(f.getvalue())


def run(path_or_proto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    src = path_or_proto.SerializeToString() if isinstance(path_or_proto, onnx.ModelProto) else str(path_or_proto)
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]
