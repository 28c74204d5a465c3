"""`edgecompress convert [RECIPE.toml]`: the whole chain from a recipe, or the built-in MNIST demo."""

from __future__ import annotations

import time

import click

from ..pipeline.registry import STAGE_NAMES as STAGES
from .common import console, emit_json, handle_errors, json_option, target_option


@click.command("convert")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@target_option
@click.option("--out", "out", default="edgecompress-out", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: stages/<n>-<stage>/ (the resumable cache), release/ and the tarball.")
@click.option("--dry-run", is_flag=True, help="Validate the recipe and print the plan; run nothing.")
@click.option("--dump-recipe", is_flag=True,
              help="Print a fully commented recipe with every key and its default (stdout), then exit.")
@click.option("--from", "from_stage", type=click.Choice(STAGES), default=None,
              help="Rerun from this stage on even if its completed output is cached.")
@json_option
@handle_errors
def convert_cmd(recipe: str | None, target: str | None, out: str, dry_run: bool, dump_recipe: bool,
                from_stage: str | None, as_json: bool) -> None:
    """Run distill -> export -> prune -> quantize -> bench -> package -> verify from RECIPE.toml.

    \b
    Without RECIPE, runs the built-in demo: an MNIST teacher trained on the shipped data, a distilled student,
    export, prune, int8 quantization for the host, bench, package, verify, then a summary table.
    Each stage is cached under OUT/stages/ by a hash of its inputs and config: an interrupted run resumes,
    and a change to a late stage reruns only from there.

    \b
    Examples:
      edgecompress convert                                  # the demo, into ./edgecompress-out
      edgecompress convert examples/image_classifier.toml --target rpi5-cortex-a76 --out out/
      edgecompress convert --dump-recipe > my_recipe.toml
    """
    from ..pipeline import load
    from ..pipeline.run import describe_plan, run_recipe
    from ..pipeline.summary import render

    if dump_recipe:
        from ..pipeline.demo import demo_table
        from ..pipeline.dump import dump_recipe as dump

        demo = demo_table()
        text = dump(model=demo["model"], data=demo["data"], target=target or "host", examples=demo)
        if as_json:
            emit_json({"ok": True, "recipe": text})
        else:
            click.echo(text, nl=False)
        return

    r = load(recipe, target=target)
    con = console()
    what = f"recipe {recipe}" if recipe else "the built-in demo (MNIST)"
    if dry_run:
        rows = describe_plan(r, out, from_stage=from_stage)
        if as_json:
            emit_json({"ok": True, "dry_run": True, "recipe": recipe, "target": r.target.name, "out": out,
                       "stages": rows})
            return
        con.print(f"{what} is valid; target {r.target.name}; output {out}", markup=False)
        for row in rows:
            settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items()) or "defaults"
            con.print(f"  {row['index']}. {row['stage']:<9} [{row['status']}]  {settings}", markup=False,
                      highlight=False)
        con.print("  then: verify the release, print the summary")
        return

    t0 = time.perf_counter()

    def say(msg: str) -> None:
        con.print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", highlight=False, markup=False)

    say(f"convert: {what} -> {out} (target {r.target.name})")
    result = run_recipe(r, out, from_stage=from_stage, progress=say)
    d = result.to_dict()
    table, times = render(result.summary, d["stages"], result.seconds, f"summary (target {result.target})")
    con.print(table)
    con.print(times)
    if result.release:
        con.print(f"release: {result.release}" + (f"  tarball: {result.tarball}" if result.tarball else ""))
    if as_json:
        emit_json(d)
