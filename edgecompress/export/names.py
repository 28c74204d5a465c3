"""Hygiene of exported graphs: value names defined more than once (ORT: "Duplicate definition of name"), and
the exporter's per-node debug metadata (`strip_node_metadata`).

Seen on a real BERT export, and reproducible with torch 2.13's dynamo exporter: it names the first nn.Linear's
output `linear`, so `output_names=["linear"]` defines that name twice and ONNX Runtime refuses the file.
`fix_duplicate_names` renames the other definitions (and the uses that read them) so that graph outputs and
graph inputs keep their user-facing names.
"""

from __future__ import annotations

from collections import Counter

import onnx


def _definitions(graph: onnx.GraphProto) -> Counter[str]:
    """How often each name is defined by graph inputs, initializers (not also inputs) and node outputs."""
    inputs = {i.name for i in graph.input}
    return Counter([i.name for i in graph.input] + [t.name for t in graph.initializer if t.name not in inputs]
                   + [o for n in graph.node for o in n.output if o])


def duplicate_names(graph: onnx.GraphProto) -> list[str]:
    """Names defined more than once by graph inputs, initializers and node outputs."""
    return sorted(name for name, k in _definitions(graph).items() if k > 1)


def fix_duplicate_names(graph: onnx.GraphProto) -> list[str]:
    """Rename all but one definition of each duplicated name; returns one note per renamed definition.

    The name stays with the last definition when it is a graph output, else with the graph input, else the last.

    Uses are rewired in graph order: a node reads the most recent definition before it, as the exporter meant.
    """
    total = _definitions(graph)
    dups = {name for name, k in total.items() if k > 1}
    if not dups:
        return []
    inputs = {i.name for i in graph.input}
    taken = inputs | {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    # the definition that keeps the name: the last one for a graph output, else the graph input, else the last
    keeper = {n: (total[n] if n in outputs or n not in inputs else 1) for n in dups}
    seen: Counter[str] = Counter()
    current: dict[str, str] = {}
    notes: list[str] = []

    def fresh(name: str) -> str:
        k = 1
        while f"{name}__{k}" in taken:
            k += 1
        taken.add(f"{name}__{k}")
        return f"{name}__{k}"

    def define(name: str, what: str) -> str:
        if name not in dups:
            return name
        seen[name] += 1
        new = name if seen[name] == keeper[name] else fresh(name)
        current[name] = new
        if new != name:
            notes.append(f"{what} {name!r} renamed to {new!r} (the name was defined {total[name]} times)")
        return new

    for vi in graph.input:
        vi.name = define(vi.name, "graph input")
    for t in graph.initializer:
        if t.name not in inputs:
            t.name = define(t.name, "initializer")
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in current:
                node.input[i] = current[name]
        for i, name in enumerate(node.output):
            if name:
                node.output[i] = define(name, f"output of node {node.name or node.op_type!r}")
    keep = [vi for vi in graph.value_info if vi.name not in dups]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    return notes


def strip_node_metadata(model: onnx.ModelProto) -> None:
    """Drop every node's metadata_props and doc_string (the torch exporter's stack traces, module paths and fx
    names), in the main graph, its subgraphs and the model's functions. They never change what the model
    computes; in a small model they can be a third of the file."""

    def strip(nodes) -> None:
        for n in nodes:
            del n.metadata_props[:]
            n.doc_string = ""
            for a in n.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    strip(g.node)

    strip(model.graph.node)
    for f in model.functions:
        strip(f.node)
