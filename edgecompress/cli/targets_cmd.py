"""`edgecompress targets`: list target profiles."""

from __future__ import annotations

import click

from .common import console, emit_json, handle_errors, json_option


@click.command("targets")
@click.argument("name", required=False)
@json_option
@handle_errors
def targets_cmd(name: str | None, as_json: bool) -> None:
    """List the target profiles (targets/*.toml plus `host`), or show one NAME (a name or a .toml path).

    \b
    Examples:
      edgecompress targets
      edgecompress targets rpi5-cortex-a76 --json
    """
    from ..targets import get_target, list_targets

    profiles = [get_target(name)] if name else list_targets()
    if as_json:
        emit_json({"targets": [p.to_dict() for p in profiles]})
        return
    from rich.table import Table

    table = Table(title="target profiles")
    for col in ("name", "arch", "ISA", "providers", "quant (fmt act/wt)"):
        table.add_column(col)
    for p in profiles:
        q = p.quantization
        table.add_row(p.name, p.arch, ",".join(p.isa), ",".join(e.replace("ExecutionProvider", "") for e in p.execution_providers),
                      f"{q.format} {q.activation_type}/{q.weight_type}{' rr' if q.reduce_range else ''}")
    console().print(table)
