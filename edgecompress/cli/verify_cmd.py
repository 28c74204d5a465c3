"""`edgecompress verify`: check a release folder or tarball (thin wiring over edgecompress.package.verify)."""

from __future__ import annotations

import click

from .common import console, emit_json, handle_errors, json_option


@click.command("verify", context_settings={"max_content_width": 110})
@click.argument("release", type=click.Path())
@json_option
@handle_errors
def verify_cmd(release, as_json):
    """Verify RELEASE (a release folder or its .tar.gz): manifest schema and integrity, sha256 and size of
    every file, no missing or extra files, safe archive entries, and model.onnx + model.ort reproducing the
    sample output in ONNX Runtime. Exit 0 only if everything holds; else exit 1 listing every failure.

    \b
    Example:
      edgecompress verify release.tar.gz --json
    """
    from ..package import verify

    report = verify(release)
    if as_json:
        emit_json(report.to_dict())
    else:
        from rich.markup import escape

        c = console()
        for check in report.checks:
            c.print(f"[green]ok[/green]   {check}")
        for failure in report.failures:
            c.print(f"[red]FAIL[/red] {escape(failure)}", highlight=False)
        if report.ok:
            c.print(f"{escape(str(release))}: [green]verified[/green]")
    if not report.ok:
        # the CLI contract: a failing command ends with an `error:` line (exit 1: the work failed)
        click.echo(f"error: {release} failed verification: {len(report.failures)} failure(s) "
                   "(hint: each is listed above; rebuild the release or restore the original files)", err=True)
        click.get_current_context().exit(1)
