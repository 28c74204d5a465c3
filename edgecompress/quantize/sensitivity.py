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
from ..onnxgraph.census import consumers
from ..onnxgraph.extra_outputs import session_with_outputs

# nodes that can fall back to fp32 usefully (they carry int8 compute); every node's output is measured
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "Add", "Mul", "Concat", "AveragePool",
               "GlobalAveragePool", "Softmax", "Resize", "Gather", "EmbedLayerNormalization")
CAP_DB = 80.0
INPUT_DB = 50.0  # a graph input quantized to 8 bits (6.02 * 8 + 1.76 dB): the noise floor the first layer starts from


@dataclass(frozen=True)
class NodeSensitivity:
    name: str
    op_type: str
    sqnr_db: float
    loss_db: float

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "sqnr_db": round(self.sqnr_db, 2),
                "loss_db": round(self.loss_db, 2)}


def rank_nodes(fp32_path: Path, q_path: Path, data: FeedData, *, quantizable: set[str] | None = None,
               threads: int = 1) -> list[NodeSensitivity]:
    fp = onnx.load(str(fp32_path))
    q = onnx.load(str(q_path))
    q_producer = {o: n.op_type for n in q.graph.node for o in n.output}
    fp_producer = {o: n.op_type for n in fp.graph.node for o in n.output}
    readers = consumers(fp.graph)
    nodes = [n for n in fp.graph.node if n.name and n.op_type in COMPUTE_OPS
             and (quantizable is None or n.name in quantizable)]
    float_inputs = {i.name for i in fp.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    # a tensor is comparable when the quantized graph produces it with the same op, or when ORT folded a Relu into
    # the following QuantizeLinear (the tensor then holds the conv's pre-activation: compared after max(., 0))
    relu_folded = {t for t, op in fp_producer.items() if op == "Relu" and q_producer.get(t) not in (None, "Relu")}
    graph_outputs = {o.name for o in fp.graph.output}
    tensors = sorted(t for t, op in fp_producer.items()
                     if (q_producer.get(t) == op or t in relu_folded or t in graph_outputs)
                     and op not in ("Shape", "Constant", "Cast"))
    if not tensors:
        return []

    def effective_output(n: onnx.NodeProto) -> str:
        out = n.output[0]
        if q_producer.get(out) != n.op_type:
            nxt = readers.get(out, [])
            if len(nxt) == 1 and nxt[0].output[0] in relu_folded:
                return nxt[0].output[0]
        return out

    s_fp = session_with_outputs(fp, tensors, threads=threads, graph_optimization="basic",
                                origin="fp32 model with exposed outputs")
    s_q = session_with_outputs(q, tensors, threads=threads, graph_optimization="basic",
                               origin="int8 model with exposed outputs")
    sig = dict.fromkeys(tensors, 0.0)
    noise = dict.fromkeys(tensors, 0.0)
    for feed in data:
        a = s_fp.run(tensors, feed)
        b = s_q.run(tensors, feed)
        for t, x, y in zip(tensors, a, b, strict=True):
            if x.shape != y.shape or np.asarray(y).dtype.kind != "f" or np.asarray(x).dtype.kind != "f":
                continue
            x = np.asarray(x, dtype=np.float64)
            y = np.asarray(y, dtype=np.float64)
            if t in relu_folded:
                y = np.maximum(y, 0.0)
            sig[t] += float((x * x).sum())
            noise[t] += float(((x - y) ** 2).sum())

    def sqnr(t: str) -> float:
        if noise[t] <= 0:
            return CAP_DB
        return float(min(CAP_DB, 10 * np.log10(max(sig[t], 1e-30) / noise[t])))

    db = {t: sqnr(t) for t in tensors if sig[t] > 0 or noise[t] > 0}
    out = []
    for n in nodes:
        t = effective_output(n)
        if t not in db:
            continue
        ins = [db[i] if i in db else INPUT_DB for i in n.input if i in db or i in float_inputs]
        base = min(ins) if ins else CAP_DB
        out.append(NodeSensitivity(n.name, n.op_type, db[t], base - db[t]))
    out.sort(key=lambda s: (-s.loss_db, s.sqnr_db))
    return out
