"""ChannelRemovalPass: remove the planned channels from every parameter slice and fix the dependent nodes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from .graphutil import const_array, new_initializer, set_const
from .groups import Analysis
from .irchecks import const_input, node_name, value_name


class ChannelRemovalPass:
    """Edits an onnx-ir model in place. `keep` maps group id -> sorted kept channel indices (only pruned groups)."""

    def __init__(self, analysis: Analysis, keep: Mapping[int, np.ndarray]) -> None:
        self.analysis = analysis
        self.keep = keep

    def kept_count(self, space: int) -> int:
        gid = self.analysis.space_group[space]
        k = self.keep.get(gid)
        return self.analysis.groups[gid].size if k is None else len(k)

    def __call__(self, model: ir.Model) -> bool:
        graph = model.graph
        values: dict[str, ir.Value] = dict(graph.initializers)
        nodes: dict[str, ir.Node] = {}
        for node in graph:
            nodes[node_name(node)] = node
            if node.op_type == "Constant":
                values.setdefault(value_name(node.outputs[0], f"output of Constant {node.name}"), node.outputs[0])
        cuts: dict[tuple[str, int], list[np.ndarray]] = {}
        for gid, kept in self.keep.items():
            g = self.analysis.groups[gid]
            removed = np.setdiff1d(np.arange(g.size), kept)
            if not len(removed):
                continue
            for sl in g.slices:
                cuts.setdefault((sl.value, sl.axis), []).append(sl.tensor_indices(removed))
        for (name, axis), parts in cuts.items():
            v = values[name]
            arr = const_array(v)
            if arr is None:
                raise ValueError(f"parameter {name!r} to prune along axis {axis} is not a constant")
            set_const(v, np.delete(arr, np.unique(np.concatenate(parts)), axis=axis))
        for fix in self.analysis.fixes:
            node = nodes[fix.node]
            getattr(self, f"_fix_{fix.kind}")(graph, node, fix.data)
        return bool(cuts)

    # node fixes -----------------------------------------------------------------------------------------
    def _fix_dw_group(self, graph: ir.Graph, node: ir.Node, data: tuple) -> None:
        node.attributes["group"] = ir.AttrInt64("group", int(const_input(node, 1).shape[0]))

    def _fix_reshape_tail(self, graph: ir.Graph, node: ir.Node, data: tuple) -> None:
        axis, tail = data
        shape = np.asarray([0] * axis + [-1] + list(tail), dtype=np.int64)
        node.replace_input_with(1, new_initializer(graph, f"{node.name}_shape", shape))
        node.attributes.pop("allowzero", None)  # 0 now means "copy the input dim" (no literal 0 dims were asked)

    def _fix_split_sizes(self, graph: ir.Graph, node: ir.Node, data: tuple) -> None:
        *outs, expand = data
        sizes = np.asarray([sum(self.kept_count(s) for s, _ in segs) * expand for segs in outs], dtype=np.int64)
        if "split" in node.attributes:
            node.attributes["split"] = ir.AttrInt64s("split", [int(x) for x in sizes])
            return
        if len(node.inputs) < 2:
            node.resize_inputs(2)
        node.replace_input_with(1, new_initializer(graph, f"{node.name}_split", sizes))
        node.attributes.pop("num_outputs", None)

    def _fix_slice_bounds(self, graph: ir.Graph, node: ir.Node, data: tuple) -> None:
        i, before, segs, expand = data
        start = sum(self.kept_count(s) for s, _ in before) * expand
        end = start + sum(self.kept_count(s) for s, _ in segs) * expand
        for idx, val in ((1, start), (2, end)):
            arr = const_input(node, idx).copy().reshape(-1)
            arr[i] = val
            node.replace_input_with(idx, new_initializer(graph, f"{node.name}_bound{idx}", arr))
