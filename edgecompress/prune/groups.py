"""Dependency groups: which channels of an ONNX graph must be pruned together.

A *space* is a set of channels created by one producer (a Conv's output channels, a Gemm/MatMul's output
columns, the heads of one attention block). Tensors carry a `Layout`: the axis that holds channels and the
spaces laid out along it (several after a Concat), each channel possibly spanning `expand` consecutive
indices (Flatten -> Gemm columns, head width). Rules in `rules.py` (and `attention.py`) propagate layouts node
by node in topological order; ops that tie channels of different spaces together (residual Add/Mul, elementwise
ops on two activations) union their spaces. A *group* is a union of spaces: the same channel indices are
removed from every parameter slice of every space in it. Any use the rules do not understand blocks the
spaces involved, with the reason, so the group is left alone instead of producing a broken model.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from .attention import claim_attention
from .rules import apply_rule
from .spaces import CLAIMED, Analysis, Analyzer, Fix, Group, Layout, MacDeps, Slice, Space, Use, segment_indices

# the data model lives in spaces.py (the rules import it); importers of these names from here keep working
__all__ = ["Analysis", "Analyzer", "CLAIMED", "Fix", "Group", "Layout", "MacDeps", "Slice", "Space", "Use",
           "analyze", "segment_indices"]


def analyze(model: ir.Model, skip: Sequence[str] = ()) -> Analysis:
    """Dependency groups of `model` (an onnx-ir model with shapes inferred and constants unshared)."""
    a = Analyzer(model, skip)
    claim_attention(a)
    for node in a.graph:
        if node.name in a.claimed_full:
            for o in node.outputs:
                a.set(o, CLAIMED)
            continue
        lays = [a.get(v) for v in node.inputs]
        outs = apply_rule(a, node, lays)
        for o, lay in zip(node.outputs, outs, strict=False):
            a.set(o, lay)
    for v in a.graph.outputs:
        lay = a.get(v)
        a.block(lay, f"its channels reach the model output {v.name!r} (model I/O is never pruned)")
    return a.finish()
