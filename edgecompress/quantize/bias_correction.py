"""Empirical bias correction (Nagel et al. 2019, section 4.2, empirical variant).

Quantized weights shift the expected output of each conv; the shift is measured per output channel on
calibration samples (fp32 conv output minus the conv output in the quantized model, averaged over batch and
space) and added to the fp32 bias, which ORT then quantizes with the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..data import FeedData
from ..onnxgraph.extra_outputs import session_with_outputs


def bias_correct(fp32_path: Path, q_path: Path, data: FeedData, *, threads: int = 1) -> tuple[onnx.ModelProto, int]:
    """A copy of the fp32 model whose conv biases absorb the mean output error of the quantized model."""
    model = onnx.load(str(fp32_path))
    q = onnx.load(str(q_path))
    q_outputs = {o for n in q.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits
             and n.output[0] in q_outputs]
    if not convs:
        return model, 0
    names = [n.output[0] for n in convs]
    s_fp = session_with_outputs(model, names, threads=threads, graph_optimization="basic",
                                origin="fp32 model with exposed conv outputs")
    s_q = session_with_outputs(q, names, threads=threads, graph_optimization="basic",
                               origin="int8 model with exposed conv outputs")
    sums: dict[str, np.ndarray] = {}
    count = 0
    for feed in data:
        a = s_fp.run(names, feed)
        b = s_q.run(names, feed)
        for name, x, y in zip(names, a, b, strict=True):
            if x.shape != y.shape or x.ndim < 2:
                continue
            axes = (0,) + tuple(range(2, x.ndim))
            d = (np.asarray(x, np.float64) - np.asarray(y, np.float64)).mean(axis=axes)
            sums[name] = sums.get(name, 0) + d
        count += 1
    by_name = {t.name: t for t in model.graph.initializer}
    corrected = 0
    for n in convs:
        if n.output[0] not in sums:
            continue
        shift = (sums[n.output[0]] / max(count, 1)).astype(np.float32)
        if len(n.input) > 2 and n.input[2]:
            t = by_name.get(n.input[2])
            if t is None:
                continue
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32) + shift, t.name))
        else:
            name = f"{n.name or n.output[0]}_bias_corrected"
            model.graph.initializer.append(numpy_helper.from_array(shift, name))
            while len(n.input) < 3:
                n.input.append("")
            n.input[2] = name
        corrected += 1
    return model, corrected
