"""Narrowing helpers for onnx-ir's optional fields in the prune passes.

The passes rely on what `graphutil.prepare` / `to_ir` establish (every node and value named, the weights they
edit constant). onnx-ir types names, inputs and shapes as optional; these helpers turn a broken invariant into
a clear `ValueError` instead of a `None` carried into a slice, a fix or a dict key.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .graphutil import const_array, static_shape


def _where(node: ir.Node) -> str:
    return f"{node.op_type} node {node.name!r}"


def node_name(node: ir.Node) -> str:
    """The node's name (prepare()/to_ir() name every node)."""
    if node.name is None:
        raise ValueError(f"{_where(node)} has no name: run the model through graphutil.prepare() first")
    return node.name


def value_name(value: ir.Value | None, what: str = "value") -> str:
    """The name of a value that must exist and be named (every ONNX graph value is)."""
    if value is None:
        raise ValueError(f"{what} is missing")
    if value.name is None:
        raise ValueError(f"{what} has no name")
    return value.name


def input_value(node: ir.Node, i: int) -> ir.Value:
    """Input `i` of `node`, which must be given."""
    v = node.inputs[i] if i < len(node.inputs) else None
    if v is None:
        raise ValueError(f"{_where(node)}: input {i} is missing")
    return v


def const_input(node: ir.Node, i: int) -> np.ndarray:
    """The constant data of input `i` of `node` (a weight the analysis found constant)."""
    arr = const_array(input_value(node, i))
    if arr is None:
        raise ValueError(f"{_where(node)}: input {i} is not a constant")
    return arr


def known_shape(value: ir.Value, what: str) -> tuple[int | None, ...]:
    """The static shape of a value whose rank the analysis already checked is known."""
    shp = static_shape(value)
    if shp is None:
        raise ValueError(f"{what}: rank unknown")
    return shp


def known_dims(shape: tuple[int | None, ...]) -> tuple[int, ...] | None:
    """`shape` when every dim is known, else None."""
    out = tuple(d for d in shape if d is not None)
    return out if len(out) == len(shape) else None
