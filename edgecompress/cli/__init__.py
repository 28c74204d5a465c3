"""The `edgecompress` command: a click group whose subcommands are imported only when used."""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from .. import __version__

# name -> (module, attribute, one-line help shown by `edgecompress --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("edgecompress.cli.export_cmd", "export_cmd", "Export a PyTorch model to ONNX and validate it."),
    "inspect": ("edgecompress.cli.inspect_cmd", "inspect_cmd", "Show an ONNX model's I/O, ops, params and MACs."),
    "prune": ("edgecompress.cli.prune_cmd", "prune_cmd", "Prune channels/units/heads structurally on the ONNX graph."),
    "quantize": ("edgecompress.cli.quantize_cmd", "quantize_cmd", "Quantize to int8 with calibration data."),
    "distill": ("edgecompress.cli.distill_cmd", "distill_cmd", "Distill a smaller student from a teacher (PyTorch)."),
    "bench": ("edgecompress.cli.bench_cmd", "bench_cmd", "Benchmark models under ONNX Runtime, locally or remotely."),
    "package": ("edgecompress.cli.package_cmd", "package_cmd", "Build a reproducible edge release folder + tarball."),
    "verify": ("edgecompress.cli.verify_cmd", "verify_cmd", "Verify a release folder or tarball."),
    "convert": ("edgecompress.cli.convert_cmd", "convert_cmd", "Run the whole chain from a recipe (or the demo)."),
    "targets": ("edgecompress.cli.targets_cmd", "targets_cmd", "List target profiles."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        argv = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if "--json" in argv:
                from .common import usage_error_json

                usage_error_json(exc)
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgecompress")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """edgecompress: turn a PyTorch model into a small, fast, verified edge release.

    \b
    The chain: distill -> export -> prune -> quantize -> bench -> package -> verify.
    `edgecompress convert` runs it all from a recipe; with no recipe it runs the built-in MNIST demo.

    \b
    Every command takes --json (one JSON object on stdout; progress on stderr).
    Exit codes: 0 success, 1 the work failed (validation, budget, runtime), 2 bad usage or bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _exit_interrupted() -> None:
    """Exit 130 at once. A Ctrl-C that hit code run through PyRun_* inside a native library leaves CPython's
    'unhandled KeyboardInterrupt' flag set even after we handled it, and the interpreter would then end itself
    by SIGINT at shutdown; everything is cleaned up by now (the stages' context managers have exited)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(130)


def main() -> None:
    try:
        try:
            cli(prog_name="edgecompress")
        finally:
            # the exit status is decided: a Ctrl-C from now on must not turn it into death by SIGINT.
            # signal.signal() raises a KeyboardInterrupt still pending from native code; it lands below.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        _exit_interrupted()
    except SystemExit as exc:
        if exc.code == 130:
            _exit_interrupted()
        raise
