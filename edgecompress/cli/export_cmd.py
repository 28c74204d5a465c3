"""`edgecompress export MODEL --input NAME:SHAPE[:DTYPE] ... --out model.onnx`: PyTorch -> validated ONNX."""

from __future__ import annotations

import click

from .common import console, handle_errors, json_option, show_result


@click.command("export")
@click.argument("model")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="A model input, in forward() order; dims: 16 (static), seq (dynamic, example 2), seq=16. "
                   "Repeat per input.")
@click.option("--out", "-o", default=None, metavar="FILE.onnx", help="Output .onnx file (required).")
@click.option("--weights", default=None, metavar="FILE",
              help="state_dict file (or checkpoint dict with 'state_dict'/'model'), read with weights_only=True.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: the exporter's).")
@click.option("--dynamic", multiple=True, metavar="NAME:AXIS=DIM,...",
              help="Mark axes dynamic, e.g. x:0=batch,1=seq (NAME: optional with one input).")
@click.option("--output-name", "output_names", multiple=True, metavar="NAME", help="Name of each output, in order.")
@click.option("--data", default=None, metavar="DATA",
              help="Also check parity on this feed data (.npz, folder of .npz, images, module:function).")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Max abs error allowed, relative to each output's scale (max |torch output|).")
@click.option("--samples", type=int, default=3, show_default=True, help="Random inputs checked.")
@click.option("--data-samples", type=int, default=16, show_default=True, help="At most this many --data samples checked.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="auto: dynamo, falling back to TorchScript with a notice.")
@click.option("--debug-metadata", is_flag=True,
              help="Keep the exporter's per-node metadata (stack traces, module paths); dropped by default.")
@json_option
@click.pass_context
@handle_errors
def export_cmd(ctx: click.Context, model: str, inputs: tuple[str, ...], out: str | None, weights: str | None,
               opset: int | None, dynamic: tuple[str, ...], output_names: tuple[str, ...], data: str | None,
               tolerance: float, samples: int, data_samples: int, exporter: str, debug_metadata: bool,
               as_json: bool) -> None:
    """Export a PyTorch model to ONNX, then check it in ONNX Runtime against PyTorch, output by output.

    MODEL is path/file.py:factory, package.module:factory (the factory returns an nn.Module), a saved
    ExportedProgram (.pt2) or a distill checkpoint (.pt). Exit 1 when the outputs differ over --tolerance.

    \b
    Examples:
      edgecompress export examples/mnist_models.py:teacher --input input:1x1x28x28 --out teacher.onnx
      edgecompress export examples.zoo:seq_encoder --input x:batchxseq=8x16 --out enc.onnx --json
      edgecompress export examples.zoo:mlp --input x:1x1x28x28 --weights mlp.pt \\
          --data calibration_data/mnist_eval.npz --out mlp.onnx
    """
    from ..errors import ConfigError
    from ..export import ExportConfig, export

    if not out:
        raise ConfigError("--out FILE.onnx is required")
    cfg = ExportConfig(inputs=inputs, weights=weights, opset=opset, dynamic=dynamic, output_names=output_names,
                       tolerance=tolerance, samples=samples, data_samples=data_samples, exporter=exporter,
                       debug_metadata=debug_metadata)
    c = console()
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    try:
        result = export(model, cfg, out=out, data=data, progress=lambda m: c.print(m, style="dim", markup=False))
    except Exception as exc:
        exporter_log = getattr(exc, "exporter_log", "")
        if debug and exporter_log.strip():
            click.echo(exporter_log.rstrip(), err=True)
        rep = getattr(exc, "report", None)
        if not as_json and isinstance(rep, dict):
            _print_parity(rep.get("parity", []))
        raise
    rep = result.report
    if debug and rep.log.strip():
        click.echo(rep.log.rstrip(), err=True)
    show_result(result, as_json, _print)


def _print(result) -> None:
    rep = result.report
    _print_parity([p.to_dict() for p in rep.parity])
    console().print(f"wrote {result.artifact.path} ({rep.size_bytes / 1e6:.3g} MB, opset {rep.opset}, {rep.exporter} "
                    f"exporter); max error {rep.max_error_rel_to_scale:.2g} of output scale (tolerance "
                    f"{rep.tolerance:g})")


def _print_parity(parity: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="parity vs PyTorch")
    for col in ("check", "output", "samples", "max abs", "scale", "rel to scale", "ok"):
        table.add_column(col)
    for p in parity:
        for o in p["outputs"]:
            table.add_row(p["kind"], o["name"], str(p["samples"]), f"{o['max_abs']:.3g}", f"{o['scale']:.3g}",
                          f"{o['rel_to_scale']:.3g}", "yes" if o["ok"] else "[red]NO[/red]")
    console().print(table)
