"""onnx-ir helpers for the prune passes: constants, static shapes, attributes, and the IR <-> proto round trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from ..onnxgraph.census import all_nodes, subgraphs
from ..onnxgraph.io import infer_shapes


def to_ir(model: onnx.ModelProto) -> ir.Model:
    """Shape-infer `model` and convert it to onnx-ir; every node gets a unique name."""
    try:
        model = infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes are optional; groups needing them become unprunable with a reason
        pass
    m = ir.from_proto(model)
    seen: set[str] = set()
    for i, node in enumerate(m.graph):
        name = node.name or f"{node.op_type}_{i}"
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        node.name = name
    return m


def prepare(model: onnx.ModelProto) -> ir.Model:
    """The IR the analysis runs on: shapes inferred, nodes named, constant subgraphs folded (weights behind
    Transpose when the exporter did no constant folding, shape arithmetic feeding Reshape), constants un-shared."""
    from onnxscript.optimizer import fold_constants

    m = to_ir(model)
    big = 1 << 40
    fold_constants(m, input_size_limit=big, output_size_limit=big,
                   should_fold=lambda n: None if n.op_type != "BatchNormalization" else False)
    unshare_constants(m.graph)
    return m


def to_proto(model: ir.Model, *, keep_shapes: bool = False) -> onnx.ModelProto:
    """Serialize; intermediate shapes are dropped (they may be stale after pruning) and inferred again."""
    proto = ir.to_proto(model)
    if not keep_shapes:
        del proto.graph.value_info[:]
    try:
        proto = infer_shapes(proto, check_type=True, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - the stage's checker/ORT load reports real problems
        pass
    return proto


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    a = node.attributes.get(name)
    return default if a is None else a.value


def producer_const_node(value: ir.Value) -> ir.Node | None:
    p = value.producer()
    if p is not None and p.op_type == "Constant" and p.domain in ("", "ai.onnx") and "value" in p.attributes:
        return p
    return None


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value of an initializer or a Constant node's output (None for activations)."""
    if value is None:
        return None
    if value.const_value is not None:
        return np.asarray(value.const_value.numpy())
    p = producer_const_node(value)
    if p is not None:
        return np.asarray(p.attributes["value"].value.numpy())
    return None


def is_const(value: ir.Value | None) -> bool:
    return value is not None and (value.const_value is not None or producer_const_node(value) is not None)


def set_const(value: ir.Value, array: np.ndarray) -> None:
    """Replace the data of an initializer or Constant output (shape may change)."""
    array = np.ascontiguousarray(array)
    tensor = ir.tensor(array, name=value.name)
    p = producer_const_node(value)
    if value.const_value is not None or p is None:
        value.const_value = tensor
    else:
        p.attributes["value"] = ir.AttrTensor("value", tensor)
    value.shape = ir.Shape(list(array.shape))


def static_shape(value: ir.Value | None) -> tuple[int | None, ...] | None:
    """Dims as ints (None where symbolic/unknown), or None when the rank is unknown."""
    if value is None:
        return None
    arr = const_array(value)
    if arr is not None:
        return tuple(int(d) for d in arr.shape)
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape)


def rank(value: ir.Value | None) -> int | None:
    s = static_shape(value)
    return None if s is None else len(s)


def _value_names(graph: ir.Graph) -> set[str]:
    """Every value name of the graph's scope: inputs, initializers, node outputs (a new one must differ from all)."""
    names = {v.name for v in graph.inputs if v.name} | set(graph.initializers)
    names |= {o.name for node in graph for o in node.outputs if o.name}
    return names


def new_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    taken = _value_names(graph)
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}__{i}"
    v = ir.Value(name=name, shape=ir.Shape(list(array.shape)), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                 const_value=ir.tensor(np.ascontiguousarray(array), name=name))
    graph.register_initializer(v)
    return v


def unshare_constants(graph: ir.Graph) -> int:
    """Give every use of a constant its own copy (and drop Identity-of-constant nodes), so per-node slicing
    never affects another node. The TorchScript exporter deduplicates equal initializers (e.g. fresh BatchNorm
    weights) into one tensor behind Identity nodes; pruning must see them as separate parameters."""
    changed = 0
    for node in list(graph):
        if node.op_type == "Identity" and node.inputs and is_const(node.inputs[0]) \
                and not node.outputs[0].is_graph_output():
            arr = const_array(node.inputs[0])
            if arr is None:  # is_const above
                raise RuntimeError(f"the constant input of {node.name} has no value")
            out = node.outputs[0]
            for use in list(out.uses()):
                nv = new_initializer(graph, out.name or "const", arr.copy())
                use.node.replace_input_with(use.idx, nv)
            graph.remove(node, safe=True)
            changed += 1
    for node in list(graph):
        for idx, v in enumerate(node.inputs):
            if v is None or not is_const(v):
                continue
            uses = list(v.uses())
            if len(uses) <= 1 and not v.is_graph_output():
                continue
            first = uses[0]
            if first.node is node and first.idx == idx:
                continue
            arr = const_array(v)
            if arr is None:  # is_const above
                raise RuntimeError(f"constant {v.name} has no value")
            nv = new_initializer(graph, v.name or "const", arr.copy())
            node.replace_input_with(idx, nv)
            changed += 1
    return changed



def reshare_constants(model: onnx.ModelProto) -> int:
    """Merge initializers of identical content (dtype, shape, bytes) back into one, undoing the copies that
    unshare_constants made for tensors pruning left unchanged; returns how many copies were dropped. Names seen
    as values inside control-flow bodies, and graph inputs/outputs, are left alone."""
    g = model.graph
    protected = {v.name for v in g.input} | {v.name for v in g.output}
    for n in all_nodes(g):
        for sg in subgraphs(n):
            protected |= {i.name for i in sg.initializer} | {i.name for i in sg.input}
            protected |= {o for m in sg.node for o in m.output}
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    for t in g.initializer:
        if t.name in protected or t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        key = (t.data_type, tuple(t.dims), onnx.numpy_helper.to_array(t).tobytes())
        rename_to = first.setdefault(key, t.name)
        if rename_to != t.name:
            rename[t.name] = rename_to
    if not rename:
        return 0
    for n in all_nodes(g):
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    _keep_initializers(g, lambda t: t.name not in rename)
    vi = [v for v in g.value_info if v.name not in rename]
    del g.value_info[:]
    g.value_info.extend(vi)
    return len(rename)


def drop_unused_initializers(model: onnx.ModelProto) -> int:
    """Remove initializers no node reads (in the main graph or any control-flow body) and no output names."""
    used = {o.name for o in model.graph.output}
    for n in all_nodes(model.graph):
        used.update(n.input)
        for sg in subgraphs(n):
            used.update(o.name for o in sg.output)
    return _keep_initializers(model.graph, lambda t: t.name in used)


def _keep_initializers(graph: onnx.GraphProto, keep) -> int:
    """Keep the initializers for which `keep(tensor)` holds; returns how many went."""
    kept = [t for t in graph.initializer if keep(t)]
    dropped = len(graph.initializer) - len(kept)
    if dropped:
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return dropped
