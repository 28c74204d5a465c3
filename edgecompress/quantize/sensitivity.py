"""Per-node sensitivity: how much quantization noise each compute node adds, from per-layer SQNR.

Both the fp32 model and the quantized model are run with every compute node's output exposed (names are kept
by ORT's QDQ and dynamic quantizers). SQNR(t) = 10 log10(sum ref^2 / sum (ref - q)^2) on each output; a node's
score is the SQNR it loses: min SQNR over its measured inputs minus the SQNR of its output. Highest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..data import FeedData
from ..onnxgraph.runtime import make_session

COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "Add", "Mul", "Concat", "AveragePool",
               "GlobalAveragePool", "MaxPool", "Relu", "Clip", "Sigmoid", "Softmax", "Resize", "Transpose",
               "Reshape", "Gather", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu")
CAP_DB = 80.0


@dataclass(frozen=True)
class NodeSensitivity:
    name: str
    op_type: str
    sqnr_db: float
    loss_db: float

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "sqnr_db": round(self.sqnr_db, 2),
                "loss_db": round(self.loss_db, 2)}


def _with_outputs(path: Path, names: list[str]) -> bytes:
    m = onnx.load(str(path))
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    return m.SerializeToString()


def rank_nodes(fp32_path: Path, q_path: Path, data: FeedData, *, quantizable: set[str] | None = None,
               threads: int = 1) -> list[NodeSensitivity]:
    fp = onnx.load(str(fp32_path), load_external_data=False)
    q = onnx.load(str(q_path), load_external_data=False)
    q_outputs = {o for n in q.graph.node for o in n.output}
    nodes = [n for n in fp.graph.node if n.name and n.op_type in COMPUTE_OPS
             and (quantizable is None or n.name in quantizable)]
    tensors = sorted({n.output[0] for n in nodes if n.output and n.output[0] in q_outputs})
    if not tensors:
        return []
    s_fp = make_session(_with_outputs(fp32_path, tensors), threads=threads, graph_optimization="basic",
                        origin="fp32 model with exposed outputs")
    s_q = make_session(_with_outputs(q_path, tensors), threads=threads, graph_optimization="basic",
                       origin="int8 model with exposed outputs")
    sig = dict.fromkeys(tensors, 0.0)
    noise = dict.fromkeys(tensors, 0.0)
    for feed in data:
        a = s_fp.run(tensors, feed)
        b = s_q.run(tensors, feed)
        for t, x, y in zip(tensors, a, b, strict=True):
            x = np.asarray(x, dtype=np.float64)
            y = np.asarray(y, dtype=np.float64)
            if x.shape != y.shape:
                continue
            sig[t] += float((x * x).sum())
            noise[t] += float(((x - y) ** 2).sum())

    def sqnr(t: str) -> float:
        if noise[t] <= 0:
            return CAP_DB
        return float(min(CAP_DB, 10 * np.log10(max(sig[t], 1e-30) / noise[t])))

    db = {t: sqnr(t) for t in tensors}
    out = []
    for n in nodes:
        t = n.output[0]
        if t not in db:
            continue
        ins = [db[i] for i in n.input if i in db]
        base = min(ins) if ins else CAP_DB
        out.append(NodeSensitivity(n.name, n.op_type, db[t], base - db[t]))
    out.sort(key=lambda s: (-s.loss_db, s.sqnr_db))
    return out
