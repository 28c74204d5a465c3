"""The graph side of weight-only quantization: which MatMul/Gemm/Gather nodes can take block-quantized weights,
the calibration statistics of their inputs (streamed: memory is one K x K matrix per distinct layer input),
and the rewrite of a model with a plan of quantized weights."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..data import FeedData
from ..onnxgraph.extra_outputs import session_with_outputs
from .weight_only import BlockQuant, matmulnbits_node, pack

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class Layer:
    """One MatMul/Gemm whose weight is a constant [K, N] matrix (Gemm's transB/alpha/beta folded in)."""

    node: str
    op: str
    a: str  # activation input
    out: str
    weight: np.ndarray  # float32 [K, N] as the node multiplies
    bias: np.ndarray | None  # Gemm's C (times beta), float32 [N]

    @property
    def k(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n(self) -> int:
        return int(self.weight.shape[1])


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def find_layers(model: onnx.ModelProto) -> tuple[list[Layer], dict[str, str]]:
    """The quantizable layers of the main graph, and the MatMul/Gemm nodes left alone with the reason."""
    inits = {t.name: t for t in model.graph.initializer}
    layers: list[Layer] = []
    skipped: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        name = node.name or f"{node.op_type}_{i}"
        b = inits.get(node.input[1]) if len(node.input) > 1 else None
        if b is None:
            skipped[name] = "its weight is not a constant (activation x activation)"
            continue
        if b.data_type != onnx.TensorProto.FLOAT:
            skipped[name] = f"weight type {onnx.TensorProto.DataType.Name(b.data_type)} (only float32 is quantized)"
            continue
        w = numpy_helper.to_array(b)
        if w.ndim != 2:
            skipped[name] = f"weight of rank {w.ndim} (only 2-D [K, N] weights)"
            continue
        bias = None
        if node.op_type == "Gemm":
            if _attr(node, "transA", 0):
                skipped[name] = "Gemm with transA"
                continue
            if _attr(node, "transB", 0):
                w = w.T
            w = w * np.float32(_attr(node, "alpha", 1.0))
            if len(node.input) > 2 and node.input[2]:
                c = inits.get(node.input[2])
                cv = numpy_helper.to_array(c) if c is not None else None
                if cv is None or cv.size != w.shape[1] or cv.dtype != np.float32:
                    skipped[name] = "Gemm bias C that is not a constant float32 vector of N"
                    continue
                bias = cv.reshape(-1) * np.float32(_attr(node, "beta", 1.0))
        layers.append(Layer(name, node.op_type, node.input[0], node.output[0], np.ascontiguousarray(w, np.float32),
                            bias))
    return layers, skipped


def hessians(model: onnx.ModelProto, layers: list[Layer], data: FeedData, *, threads: int,
             tick: Callable[[int], None] | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """H = E[x x^T] of each distinct layer input over every row of the calibration data (float64, K x K).

    One pass, one sample at a time: memory is the sum of K^2 over distinct inputs plus one sample's activations.
    """
    graph_inputs = {i.name for i in model.graph.input}
    wanted = sorted({ly.a for ly in layers})
    inner = [a for a in wanted if a not in graph_inputs]
    sess = session_with_outputs(model, inner, origin="the fp32 model (weight-only calibration)", threads=threads)
    acc: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    t0 = time.perf_counter()
    for feed in data:
        got = dict(zip(inner, sess.run(inner, feed), strict=True)) if inner else {}
        for a in wanted:
            x = np.asarray(got[a] if a in got else feed[a], dtype=np.float64)
            x = x.reshape(-1, x.shape[-1])
            if a not in acc:
                acc[a] = np.zeros((x.shape[1], x.shape[1]))
                rows[a] = 0
            acc[a] += x.T @ x
            rows[a] += x.shape[0]
        if tick is not None:
            tick(1)
    out = {a: acc[a] / max(rows[a], 1) for a in acc}
    stats = {"samples": data.n, "seconds": round(time.perf_counter() - t0, 2),
             "statistics_mb": round(sum(h.nbytes for h in out.values()) / 2 ** 20, 2),
             "rows": int(max(rows.values(), default=0))}
    return out, stats


def rewrite(model: onnx.ModelProto, layers: list[Layer], plan: dict[str, BlockQuant], *, accuracy_level: int,
            tables: Sequence[Table] = ()) -> onnx.ModelProto:
    """A copy of `model` with each planned layer replaced by MatMulNBits and each planned table by
    GatherBlockQuantized (in place, order kept), and the weights that no node reads any more removed."""
    by_name = {ly.node: ly for ly in layers}
    by_table = {t.node: t for t in tables}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    for i, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{i}"
        bq = plan.get(name)
        if bq is not None and name in by_table and node.op_type == "Gather":
            qn, inits = gather_node(f"{name}_Q{bq.bits}", by_table[name], bq)
            new_nodes.append(qn)
            new_inits += inits
            continue
        if bq is None or node.op_type not in ("MatMul", "Gemm"):
            new_nodes.append(node)
            continue
        ly = by_name[name]
        bias = None
        if ly.bias is not None:
            bias = f"{name}_bias"
            new_inits.append(numpy_helper.from_array(ly.bias.astype(np.float32), bias))
        qn, inits = matmulnbits_node(f"{name}_Q{bq.bits}", ly.a, ly.out, bq, ly.n, accuracy_level=accuracy_level,
                                     bias=bias)
        new_nodes.append(qn)
        new_inits += inits
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    _drop_unused(m)
    if not any(o.domain == MS_DOMAIN for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return m


def _drop_unused(m: onnx.ModelProto) -> None:
    used: set[str] = set()

    def visit(graph: onnx.GraphProto) -> None:
        for n in graph.node:
            used.update(n.input)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g)
                for sg in a.graphs:
                    visit(sg)

    visit(m.graph)
    used.update(o.name for o in m.graph.output)
    keep = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    names = {t.name for t in keep}
    inputs = [i for i in m.graph.input if i.name in used or i.name not in names]
    if len(inputs) != len(m.graph.input):
        del m.graph.input[:]
        m.graph.input.extend(inputs)


@dataclass(frozen=True)
class Table:
    """A Gather that reads rows of a constant float32 [V, D] table (an embedding)."""

    node: str
    indices: str
    out: str
    table: np.ndarray  # float32 [V, D]


def embedding_gathers(model: onnx.ModelProto, block: int) -> tuple[list[Table], dict[str, str]]:
    """Gather nodes of the main graph that read rows of a constant float32 [V, D] table (embeddings) whose D
    splits into whole blocks; and those left alone with the reason."""
    inits = {t.name: t for t in model.graph.initializer}
    ok: list[Table] = []
    skipped: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Gather" or node.input[0] not in inits:
            continue
        name = node.name or f"Gather_{i}"
        t = inits[node.input[0]]
        if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) != 2 or _attr(node, "axis", 0) != 0:
            continue
        if t.dims[0] * t.dims[1] < 4096:
            continue  # small tables (shape constants, tiny lookups) stay as they are
        if t.dims[1] % block:
            skipped[name] = f"embedding width {t.dims[1]} is not a multiple of block {block}"
            continue
        ok.append(Table(name, node.input[1], node.output[0], numpy_helper.to_array(t)))
    return ok, skipped


def gather_node(name: str, table: Table, bq: BlockQuant) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """GatherBlockQuantized with uint8 data (bits 4: two values per byte along D, low bits first), blocks of
    `bq.block` along D; `bq` quantizes table.T, so its rows are the table's rows."""
    b, scales, zp = pack(bq)
    v = b.shape[0]
    inits = [numpy_helper.from_array(b.reshape(v, -1), f"{name}_data{bq.bits}"),
             numpy_helper.from_array(scales, f"{name}_scales")]
    inputs = [inits[0].name, table.indices, inits[1].name]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, f"{name}_zero_points"))
        inputs.append(inits[-1].name)
    node = helper.make_node("GatherBlockQuantized", inputs, [table.out], name=name, domain=MS_DOMAIN,
                            bits=bq.bits, block_size=bq.block, gather_axis=0, quantize_axis=1)
    return node, inits
