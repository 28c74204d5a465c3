"""Attention heads as whole units: match multi-head attention blocks in the graph and claim them.

Pattern (what the TorchScript and dynamo exporters emit for explicit Q/K/V projections):

    x -> MatMul(W_q)/Gemm [-> Add(b_q)] -> Reshape(.., H, d) -> Transpose -> [Mul/Div scalar] -> MatMul(q, k^T)
    x -> ...K projection... -> Reshape(.., H, d) -> Transpose(s)           --------------------^
    scores -> [Mul/Div/Add] -> Softmax(-1) -> MatMul(p, v) <- Transpose <- Reshape <- V projection
    ctx -> Transpose -> Reshape(.., H*d) -> MatMul(W_o)

A match becomes one group of H heads of width d: columns of W_q/W_k/W_v (and their biases) and rows of W_o
are removed head by head; the split Reshapes get shape [0, .., -1, d] and the merge Reshape [0, .., -1].
Blocks that do not match are left to the generic rules, which make their channels unprunable with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from .graphutil import attr, const_array, is_const, static_shape
from .irchecks import known_shape, node_name, value_name
from .spaces import Analyzer, Fix, Layout, MacDeps, Use

_PASS = {"Mul", "Div"}  # scaling by a constant scalar


@dataclass
class _Proj:
    node: ir.Node
    weight: ir.Value
    out_axis: int
    bias: ir.Value | None
    reshape: ir.Node


def _single_consumer(v: ir.Value) -> ir.Node | None:
    uses = list(v.uses())
    return uses[0].node if len(uses) == 1 and not v.is_graph_output() else None


def _scalar_const(v: ir.Value | None) -> bool:
    arr = const_array(v)
    return arr is not None and arr.size == 1


def _producer(v: ir.Value | None) -> ir.Node | None:
    """The node computing `v` (None for graph inputs, constants without a node, and missing inputs)."""
    return None if v is None else v.producer()


def _back_to_reshape(v: ir.Value | None, chain: list[ir.Node]) -> ir.Node | None:
    """Walk up through Transpose and scalar Mul/Div to the Reshape that splits heads."""
    node = _producer(v)
    while node is not None:
        if node.op_type == "Reshape":
            return node
        scaling = node.op_type in _PASS and len(node.inputs) == 2 and _scalar_const(node.inputs[1])
        if node.op_type != "Transpose" and not scaling:
            return None
        chain.append(node)
        node = _producer(node.inputs[0])
    return None


def _projection(reshape: ir.Node, chain: list[ir.Node]) -> _Proj | None:
    node = _producer(reshape.inputs[0])
    bias = None
    if node is not None and node.op_type == "Add" and len(node.inputs) == 2:
        ci = 0 if is_const(node.inputs[0]) else 1 if is_const(node.inputs[1]) else None
        if ci is None:
            return None
        bias = node.inputs[ci]
        chain.append(node)
        node = _producer(node.inputs[1 - ci])
    if node is None or node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
        return None
    w = node.inputs[1]
    W = const_array(w)
    if w is None or W is None:
        return None
    if node.op_type == "MatMul":
        return _Proj(node, w, 1, bias, reshape) if W.ndim == 2 else None
    if not int(attr(node, "transA", 0)):
        if bias is not None or (len(node.inputs) > 2 and node.inputs[2] is not None):
            if bias is None:
                bias = node.inputs[2]
            else:
                return None
        return _Proj(node, w, 0 if int(attr(node, "transB", 0)) else 1, bias, reshape)
    return None


def _heads(reshape: ir.Node) -> tuple[int, int] | None:
    shp_in, shp_out = static_shape(reshape.inputs[0]), static_shape(reshape.outputs[0])
    if not shp_in or not shp_out or len(shp_out) != len(shp_in) + 1:
        return None
    h, d, hidden = shp_out[-2], shp_out[-1], shp_in[-1]
    if h is None or d is None or hidden is None or h * d != hidden or h < 2:
        return None
    return int(h), int(d)


def _match(score_mm: ir.Node) -> tuple[list[_Proj], ir.Node, ir.Node, list[ir.Node], int, int] | str:
    if is_const(score_mm.inputs[0]) or is_const(score_mm.inputs[1]):
        return "not an activation x activation MatMul"
    internal: list[ir.Node] = [score_mm]
    node = _single_consumer(score_mm.outputs[0])
    while node is not None and node.op_type in ("Mul", "Div", "Add"):
        if node.op_type == "Add":
            return "masked attention (Add before Softmax) is not matched"
        if not _scalar_const(node.inputs[1]):
            return "scores scaled by a non-scalar"
        internal.append(node)
        node = _single_consumer(node.outputs[0])
    if node is None or node.op_type != "Softmax":
        return "no Softmax after the scores"
    internal.append(node)
    ctx_mm = _single_consumer(node.outputs[0])
    if ctx_mm is None or ctx_mm.op_type != "MatMul" or ctx_mm.inputs[0] is not node.outputs[0]:
        return "Softmax output is not multiplied by V"
    internal.append(ctx_mm)
    projs: list[_Proj] = []
    for v in (score_mm.inputs[0], score_mm.inputs[1], ctx_mm.inputs[1]):
        chain: list[ir.Node] = []
        r = _back_to_reshape(v, chain)
        if r is None:
            return "Q/K/V do not come from a head-splitting Reshape"
        p = _projection(r, chain)
        if p is None:
            return "Q/K/V Reshape is not fed by a projection with constant weights"
        internal.extend(chain)
        internal.append(r)
        projs.append(p)
    hd = {_heads(p.reshape) for p in projs}
    shared = hd.pop() if len(hd) == 1 else None
    if shared is None:
        return "Q/K/V head shapes differ or are unknown"
    heads, d = shared
    t = _single_consumer(ctx_mm.outputs[0])
    if t is None or t.op_type != "Transpose":
        return "context is not transposed back"
    merge = _single_consumer(t.outputs[0])
    if merge is None or merge.op_type != "Reshape":
        return "context is not merged by a Reshape"
    shp = static_shape(merge.outputs[0])
    if not shp or shp[-1] != heads * d:
        return "merge Reshape does not give heads x width columns"
    out = _single_consumer(merge.outputs[0])
    if out is None or out.op_type not in ("MatMul", "Gemm") or const_array(out.inputs[1]) is None:
        return "merged context does not feed an output projection"
    if out.op_type == "Gemm" and int(attr(out, "transA", 0)):
        return "output projection Gemm has transA"
    internal += [t, merge]
    # every internal tensor must stay inside the block
    inside = {id(n) for n in internal} | {id(p.node) for p in projs} | {id(out)}
    for n in internal:
        for o in n.outputs:
            if o.is_graph_output() or any(id(u.node) not in inside for u in o.uses()):
                return f"an intermediate tensor of {n.name} is used outside the attention block"
    for p in projs:
        if len(list(p.node.outputs[0].uses())) != 1:
            return f"projection {p.node.name} output is used outside the attention block"
    return projs, merge, out, internal, heads, d


def claim_attention(a: Analyzer) -> None:
    """Find attention blocks; claim their nodes and create one heads space per block."""
    for node in a.graph:
        if node.op_type != "MatMul" or node.name in a.claimed_full or is_const(node.inputs[0]) \
                or is_const(node.inputs[1]):
            continue
        nxt = _single_consumer(node.outputs[0])
        # quick filter: score MatMuls lead (through scalar ops) to Softmax
        probe, k = nxt, 0
        while probe is not None and probe.op_type in ("Mul", "Div") and k < 3:
            probe, k = _single_consumer(probe.outputs[0]), k + 1
        if probe is None or probe.op_type not in ("Softmax", "Add"):
            continue
        m = _match(node)
        if isinstance(m, str):
            a.notes.append(f"attention at {node.name} not pruned as heads: {m}")
            continue
        projs, merge, out, internal, heads, d = m
        hs = a.new_space(heads, f"attention heads at {node.name}", kind="heads", unit=d)
        lay = Layout(0, 1, ((hs, heads),), d)
        for p in projs:
            pname = node_name(p.node)
            a.add_slice(lay, p.weight, p.out_axis, "weight_out", pname)
            if p.bias is not None:
                b = const_array(p.bias)
                if b is None or b.shape[-1] != heads * d:
                    a.block(lay, f"projection {pname} has an unexpected bias")
                else:
                    a.add_slice(lay, p.bias, b.ndim - 1, "bias", pname)
            a.claimed_out.add(pname)
            a.head_space[pname] = hs
            r = len(known_shape(p.reshape.outputs[0], f"head-splitting Reshape {p.reshape.name}"))
            a.fixes.append(Fix("reshape_tail", node_name(p.reshape), (r - 2, (d,))))
        out_name = node_name(out)
        wo_axis = 1 if (out.op_type == "Gemm" and int(attr(out, "transB", 0))) else 0
        a.add_slice(lay, out.inputs[1], wo_axis, "weight_in", out_name)
        a.spaces[hs].uses.append(_use(out, merge, d))
        merge_rank = len(known_shape(merge.outputs[0], f"head-merging Reshape {merge.name}"))
        a.fixes.append(Fix("reshape_tail", node_name(merge), (merge_rank - 1, ())))
        a.claimed_in.add(out_name)
        a.head_space[out_name] = hs
        for n in internal:
            a.claimed_full.add(node_name(n))
            if n.op_type == "MatMul":
                a.macs.append(MacDeps(node_name(n), ((hs, heads),), None))


def _use(out: ir.Node, merge: ir.Node, d: int) -> Use:
    shp = known_shape(merge.outputs[0], f"head-merging Reshape {merge.name}")
    return Use(node_name(out), value_name(merge.outputs[0], f"output of {merge.name}"), len(shp) - 1, 0, d)
