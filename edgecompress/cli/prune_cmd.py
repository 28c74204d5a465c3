"""`edgecompress prune`: structured channel / unit / head pruning on the ONNX graph (wiring over edgecompress.prune)."""

from __future__ import annotations

import click

from ..prune.config import DEFAULT_MAX_DROP
from .common import compare_options, console, handle_errors, json_option, show_result, target_option


@click.command("prune", context_settings={"max_content_width": 110})
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), metavar="OUT.onnx",
              help="Where to write the pruned model (written atomically).")
@click.option("--ratio", type=float, default=None, metavar="R",
              help="Remove at most the fraction R of the channels of every prunable group (uniform), 0 <= R < 1; "
                   "outside --max-drop the ratio is backed off.")
@click.option("--target-macs", type=float, default=None, metavar="F",
              help="Keep at least the fraction F of the MACs (0 < F < 1), ranking channels globally across groups; "
                   "outside --max-drop more is kept. With neither --ratio nor --target-macs, the largest reduction "
                   "inside --max-drop is searched.")
@click.option("--criterion", type=click.Choice(["l1", "l2", "magnitude", "bn", "activation", "taylor"]), default="l2",
              show_default=True,
              help="Channel importance: l1/l2 of the producer weights (x BatchNorm scale); magnitude: prune norms "
                   "below --alpha x the group's max; bn: BatchNorm |gamma|; activation: mean |activation| x "
                   "consumer weight norm (needs --calibration); taylor: first-order Taylor importance |w * dL/dw| "
                   "of a label-free output probe, through PyTorch (needs --calibration).")
@click.option("--alpha", type=float, default=0.05, show_default=True, metavar="A",
              help="Threshold of --criterion magnitude, as a fraction of the group's largest norm.")
@click.option("--calibration", default=None, metavar="DATA",
              help="Calibration data (.npz, folder, images, module:function) for reconstruction and activations.")
@click.option("--eval", "eval_data", default=None, metavar="DATA",
              help="Evaluation data (optional 'labels'): the pruned model is compared with the input on it.")
@click.option("--compensate/--no-compensate", default=True, show_default=True,
              help="With --calibration: move each removed channel's mean contribution (a constant act(bias) "
                   "for near-zero channels) into its consumers' biases.")
@click.option("--reconstruct/--no-reconstruct", default=True, show_default=True,
              help="With --calibration: re-fit consumer weights by least squares and re-match BatchNorm statistics.")
@click.option("--round-to", type=int, default=None, metavar="N",
              help="Kept channels are a multiple of N (default: the target profile's, else 8).")
@click.option("--skip", multiple=True, metavar="NODE", help="Never prune the output channels of NODE (repeatable).")
@click.option("--samples", type=int, default=128, show_default=True, help="Calibration samples used.")
@compare_options
@click.option("--max-drop", type=float, default=DEFAULT_MAX_DROP, show_default=True, metavar="X",
              help="Largest drop accepted on the worst output (0.02 = 2 % agreement / cosine / recall; 1 accepts "
                   "anything), measured on --eval (else on calibration samples reconstruction was not fitted on). A "
                   "reduction outside it is backed off by bisection; when none is inside, nothing is written and the "
                   "exit code is 1.")
@click.option("--recover", "recover_data", default=None, metavar="DATA",
              help="Win the accuracy back: distil the pruned model from MODEL on unlabeled DATA (images / feed data; "
                   "augmented crops), in PyTorch, before the budget is checked. Needs --ratio or --target-macs.")
@click.option("--recover-steps", type=int, default=300, show_default=True, metavar="N", help="Recovery steps.")
@click.option("--recover-batch-size", type=int, default=32, show_default=True, metavar="B", help="Recovery batch.")
@click.option("--recover-lr", type=float, default=5e-4, show_default=True, metavar="LR",
              help="Recovery learning rate (AdamW, warm-up then cosine decay).")
@click.option("--recover-synthetic", type=float, default=0.0, show_default=True, metavar="F",
              help="Fraction of each image batch replaced by procedural 'dead leaves' images during recovery "
                   "(scaled to the data's per-channel statistics): fewer real photos need more.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the recovery trains.")
@click.option("--resume", is_flag=True, help="Continue a killed recovery from OUT.onnx.recover-state.")
@target_option
@json_option
@handle_errors
def prune_cmd(model, out, ratio, target_macs, criterion, alpha, calibration, eval_data, compensate, reconstruct,
              round_to, skip, samples, metric, detection, state, max_drop, recover_data, recover_steps,
              recover_batch_size, recover_lr, recover_synthetic, device, resume, target, as_json):
    """Prune channels, MLP units and attention heads of MODEL.onnx structurally.

    \b
    Coupled channels (residual adds, concats, depthwise convs, flatten -> linear, heads) are removed together;
    anything not understood is left alone and listed with the reason. Model inputs/outputs keep their shape.
    Exit 2 when nothing can be pruned or an option is out of range.

    \b
    Examples:
      edgecompress prune model.onnx --target-macs 0.5 --calibration calib.npz --eval eval.npz --out pruned.onnx
      edgecompress prune model.onnx --max-drop 0.02 --calibration calib.npz --eval eval.npz --out pruned.onnx
      edgecompress prune model.onnx --ratio 0.3 --criterion bn --out pruned.onnx --json
      edgecompress prune model.onnx --target-macs 0.7 --recover photos/ --calibration calib.npz --eval eval.npz \\
          --max-drop 0.1 --device cuda --out pruned.onnx
    """
    from ..prune import PruneConfig, prune

    cfg = PruneConfig(ratio=ratio, target_macs=target_macs, criterion=criterion, alpha=alpha, compensate=compensate,
                      reconstruct=reconstruct, round_to=round_to, skip=tuple(skip), samples=samples, metric=metric,
                      detection=detection, state=tuple(state), max_drop=max_drop, recover=recover_data is not None,
                      recover_steps=recover_steps, recover_batch_size=recover_batch_size, recover_lr=recover_lr,
                      recover_synthetic=recover_synthetic, device=device, resume=resume)
    result = prune(model, cfg, out=out, calibration=calibration, eval_data=eval_data, target=target,
                   recover_data=recover_data, progress=not as_json)
    show_result(result, as_json, _print)


def _print(result) -> None:
    from rich.table import Table

    r = result.report
    t = Table(title=f"pruned -> {result.artifact.path}")
    for col in ("group", "kind", "before", "after"):
        t.add_column(col)
    for g in r.groups:
        t.add_row(g.name, g.kind, str(g.channels_before), str(g.channels_after))
    con = console()
    con.print(t)
    con.print(f"MACs {r.macs_before:,} -> {r.macs_after:,} ({r.macs_kept:.1%} kept); "
              f"params {r.params_before:,} -> {r.params_after:,} ({r.params_kept:.1%} kept)")
    if r.fidelity is not None:
        f = r.fidelity
        con.print(f"fidelity: {f.summary()}")
        if r.recovery is not None and r.recovery.get("fidelity_before"):
            b = r.recovery["fidelity_before"]
            con.print(f"before recovery: drop {b['drop']:.4f} on {b.get('worst_output', '?')}; recovery "
                      f"{r.recovery['steps']} steps, {r.recovery['seconds']:.0f} s on {r.recovery['device']}"
                      + ("" if r.recovery["kept"] else " (not kept: it made the model worse)"))
        if r.fidelity_without_reconstruction is not None:
            con.print(f"without reconstruction: {r.fidelity_without_reconstruction.summary()}")
    if len(r.curve) > 1:
        c = Table(title=f"reductions tried (max_drop {r.max_drop})")
        for col in ("MACs kept", "params kept", "drop", "on output", "speed-up", "", ""):
            c.add_column(col)
        for p in r.curve:
            bar = "#" * max(0, round(30 * (1 - min(1.0, (p.drop or 0.0) / max(r.max_drop * 4, 1e-9)))))
            c.add_row(f"{p.macs_kept:.3f}", f"{p.params_kept:.3f}", "-" if p.drop is None else f"{p.drop:.4f}",
                      f"{p.output} ({p.metric})", "-" if p.speedup is None else f"{p.speedup:.2f}x",
                      ("chosen" if p.chosen else "") or ("ok" if p.within else "over"), bar)
        con.print(c)
    if r.unprunable:
        con.print(f"{len(r.unprunable)} group(s) left unpruned:")
        for u in r.unprunable:
            con.print(f"  {u.name} ({u.channels} {u.kind}): {u.reasons[0]}")
    for n in r.notes:
        con.print(f"note: {n}")
