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


def plant_zeros(src, dst, fraction: float = 0.5, seed: int = 0) -> dict[int, np.ndarray]:
    """Zero the producer weights (and BN shift/mean, biases, additive constants) of `fraction` of the channels of
    every prunable group, so those channels carry exact zeros; returns group id -> planted channels."""
    from edgecompress.prune.graphutil import const_array, prepare, set_const, to_proto
    from edgecompress.prune.groups import analyze

    m = prepare(onnx.load(str(src)))
    a = analyze(m)
    rng = np.random.default_rng(seed)
    values = dict(m.graph.initializers)
    ops = {n.name: n.op_type for n in m.graph}
    planted = {}
    for g in a.groups:
        if not g.prunable:
            continue
        chans = np.sort(rng.choice(g.size, int(np.floor(fraction * g.size)), replace=False))
        planted[g.id] = chans
        for sl in g.slices:
            if sl.kind in ("weight_in", "bn_scale", "bn_var") or (sl.kind == "const" and ops[sl.node] not in ("Add", "Sub")):
                continue
            v = values[sl.value]
            arr = np.moveaxis(const_array(v).copy(), sl.axis, 0)
            arr[sl.tensor_indices(chans)] = 0
            set_const(v, np.moveaxis(arr, 0, sl.axis))
    onnx.save(to_proto(m, keep_shapes=True), str(dst))
    return planted
