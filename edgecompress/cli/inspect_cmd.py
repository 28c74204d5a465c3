"""`edgecompress inspect MODEL.onnx`: I/O, opset, ops, params, MACs, quantization state, size (torch-free)."""

from __future__ import annotations

import click

from .common import console, emit_json, handle_errors, json_option


@click.command("inspect")
@click.argument("model")
@click.option("--per-node", is_flag=True, help="Also list the MACs of every Conv/Gemm/MatMul node.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Size of a symbolic dim for the MAC count, e.g. --dim seq=128 (default: 1).")
@json_option
@handle_errors
def inspect_cmd(model: str, per_node: bool, dims: tuple[str, ...], as_json: bool) -> None:
    """Show an ONNX model's inputs/outputs, opset, op histogram, parameters, MACs and quantization state.

    \b
    Examples:
      edgecompress inspect model.onnx
      edgecompress inspect model_int8.onnx --json
      edgecompress inspect bert.onnx --dim batch=1 --dim seq=128
    """
    from ..errors import ConfigError, ModelError
    from ..onnxgraph.inspect import human_bytes, human_count, inspect

    dim_values: dict[str, int] = {}
    for d in dims:
        name, eq, size = d.partition("=")
        if not eq or not name.strip() or not size.strip().isdigit() or int(size) <= 0:
            raise ConfigError(f"--dim {d!r}: expected NAME=SIZE with a positive integer size, e.g. seq=128")
        dim_values[name.strip()] = int(size)
    rep = inspect(model, dim_values=dim_values)
    failed = None
    if rep.checker != "ok":  # show what could be read, then fail: a model the checker rejects is bad input
        failed = ModelError(f"model {model} fails the ONNX checker: {' '.join(str(rep.checker).split())[:300]}",
                            hint="the tables above show what could be read; fix the graph or re-export it")
    if as_json:
        report = rep.to_dict()
        if not per_node:
            report["macs"].pop("per_node", None)
        if failed is not None:  # still one JSON object: the error, carrying the inspection as its report
            failed.report = report
            raise failed
        emit_json(report)
        return
    from rich.console import JustifyMethod
    from rich.table import Table

    c = console()
    ext = f" + {human_bytes(rep.total_size_bytes - rep.file_size_bytes)} external data" if rep.external_data else ""
    c.print(f"[bold]{rep.path}[/bold]  {human_bytes(rep.file_size_bytes)}{ext}  opset {rep.opset}  "
            f"ir {rep.ir_version}  {rep.producer}")
    io = Table(title="inputs / outputs")
    for col in ("", "name", "shape", "dtype"):
        io.add_column(col)
    for kind, specs in (("in", rep.inputs), ("out", rep.outputs)):
        for s in specs:
            io.add_row(kind, s["name"], "x".join(str(d) if d is not None else "?" for d in s["shape"]) or "scalar",
                       s["dtype"])
    c.print(io)
    c.print(f"nodes {rep.nodes}   params {human_count(rep.params)} ({human_bytes(rep.params_bytes)})   "
            f"MACs {human_count(rep.macs.total)}   quantization {rep.quantization}")
    if rep.int8:
        c.print(f"int8 compute: {rep.int8['int8']}/{rep.int8['total']} Conv/MatMul/Gemm nodes "
                f"({rep.int8['int8_fraction']:.0%})")
        others: dict[str, int] = {}
        for prec in (rep.int8.get("other_nodes") or {}).values():
            others[prec] = others.get(prec, 0) + 1
        for prec, n in sorted(others.items()):
            c.print(f"{prec}: {n}/{rep.int8['total']} Conv/MatMul/Gemm nodes")
    if rep.weights:
        wt = Table(title=f"weights: {rep.weight_format}")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("format", "left"), ("tensors", "right"), ("weights", "right"), ("bytes", "right"),
            ("scales", "right"), ("bits/w", "right"), ("read by", "left"))
        for col, just in columns:
            wt.add_column(col, justify=just, no_wrap=col == "format")
        for r in rep.weights:
            readers = sorted({op.rsplit(".", 1)[-1] for op in r["ops"]})
            wt.add_row(r["format"], str(r["tensors"]), human_count(r["weights"]), human_bytes(r["bytes"]),
                       human_bytes(r["overhead_bytes"]) if r["overhead_bytes"] else "", f"{r['bits_per_weight']:g}",
                       ", ".join(readers[:3]) + (" ..." if len(readers) > 3 else ""))
        c.print(wt)
    ops = Table(title="ops")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    ops.add_column("MACs", justify="right")
    for op, n in rep.op_histogram.items():
        m = rep.macs.by_op_type.get(op)
        ops.add_row(op, str(n), human_count(m) if m is not None else "")
    c.print(ops)
    if per_node and rep.macs.per_node:
        pn = Table(title="MACs per node")
        pn.add_column("node")
        pn.add_column("MACs", justify="right")
        for name, m in rep.macs.per_node.items():
            pn.add_row(name, f"{m:,}")
        c.print(pn)
    for note in rep.symbolic_dims and [f"symbolic dims: {', '.join(rep.symbolic_dims)}"] or []:
        c.print(note)
    for note in rep.macs.symbolic + rep.macs.uncounted + rep.notes:
        c.print(f"note: {note}")
    for row in rep.external_data:
        c.print(f"external data: {row['location']} ({human_bytes(row['bytes'])}, {row['tensors']} tensors)")
    if failed is not None:
        raise failed
