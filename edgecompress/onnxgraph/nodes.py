"""Walking an ONNX graph (`onnx.ModelProto`): nodes at any depth, consumers, display names, attributes, op domains.

The lowest layer of onnxgraph: macs.py and census.py build on it, and census re-exports these names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

DEFAULT_DOMAINS = ("", "ai.onnx")
MS = "com.microsoft"


def op_domain(node: onnx.NodeProto) -> str:
    """The node's domain, "" for the default ONNX domain however it is spelt."""
    return "" if node.domain in DEFAULT_DOMAINS else node.domain


def qualified_op(node: onnx.NodeProto) -> str:
    """`Op` in the default domain, `domain.Op` elsewhere (the keys of op histograms)."""
    d = op_domain(node)
    return f"{d}.{node.op_type}" if d else node.op_type


def subgraphs(node: onnx.NodeProto):
    """The control-flow bodies (If branches, Loop/Scan bodies) held in a node's attributes."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def all_nodes(graph: onnx.GraphProto):
    """Every node of `graph` and of its control-flow bodies, at any depth."""
    for n in graph.node:
        yield n
        for g in subgraphs(n):
            yield from all_nodes(g)


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes of `graph` (not its subgraphs) that take it as an input, once per use."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def node_names(graph: onnx.GraphProto) -> list[str]:
    """A unique display name per node of `graph` (its name, or `<op_type>_<index>` when empty/duplicated)."""
    seen: set[str] = set()
    out = []
    for i, n in enumerate(graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        out.append(name)
    return out


def numel(t: TensorProto) -> int:
    """Number of elements of an initializer (1 for a scalar)."""
    return int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1


def attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """The value of attribute `name` of `node` (onnx.helper.get_attribute_value), or `default`."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default
