"""`edgecompress distill`: distill a smaller student from a teacher (PyTorch). Thin wiring; torch loads lazily."""

from __future__ import annotations

import os

import click

from .common import console, handle_errors, json_option, show_result


@click.command("distill")
@click.option("--teacher", required=True, metavar="SPEC", help="Teacher: path/file.py:factory or pkg.module:factory.")
@click.option("--teacher-weights", default=None, metavar="FILE", help="Teacher state_dict (or dict with 'state_dict').")
@click.option("--student", default=None, metavar="SPEC", help="Student: path/file.py:factory or pkg.module:factory.")
@click.option("--student-weights", default=None, metavar="FILE", help="Initial student weights.")
@click.option("--student-from-teacher", default=None, metavar="width=F|depth=K",
              help="Derive the student from the teacher: keep a fraction F of channels, or every K-th block.")
@click.option("--student-from-pruned", default=None, metavar="PRUNED.onnx",
              help="Start from a model that `edgecompress prune` made from this teacher's export: the teacher's "
                   "class with the pruned channel counts and weights (checked against the pruned model in ORT).")
@click.option("--data", required=True, metavar="DATA", help="Training feeds (.npz, folder, module:function) with labels.")
@click.option("--val", default=None, metavar="DATA", help="Validation feeds; default: a fixed split of --data.")
@click.option("--out", required=True, metavar="FILE", help="Student checkpoint to write (e.g. student.pt).")
@click.option("--epochs", default=40, show_default=True, type=int,
              help="Training epochs (best epoch kept by val; the default is measured, docs/distill.md).")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--optimizer", default="adamw", show_default=True, type=click.Choice(["adamw", "sgd"]))
@click.option("--weight-decay", default=1e-4, show_default=True, type=float)
@click.option("--warmup-epochs", default=0, show_default=True, type=int)
@click.option("--temperature", default=4.0, show_default=True, type=float, help="KD temperature T.")
@click.option("--alpha", default=0.9, show_default=True, type=float,
              help="Weight of the KD term; 1 - alpha weighs cross-entropy on labels (1 = soft targets only).")
@click.option("--loss", default="kd", show_default=True, type=click.Choice(["kd", "cosine", "mse"]),
              help="kd: logits; cosine/mse: embedding models.")
@click.option("--feature-kd", "feature_kd", multiple=True, metavar="TEACHER_LAYER:STUDENT_LAYER",
              help="Hint loss between intermediate layers through a learned 1x1/linear adapter (repeatable).")
@click.option("--feature-weight", default=1.0, show_default=True, type=float)
@click.option("--augment-shift", default=0, show_default=True, type=int,
              help="Random translation of image inputs by up to N pixels (teacher and student see the same).")
@click.option("--augment-rotate", default=0.0, show_default=True, type=float, metavar="DEG",
              help="Random rotation of image inputs by up to +-DEG degrees (with --augment-scale: one affine warp).")
@click.option("--augment-scale", default=0.0, show_default=True, type=float, metavar="F",
              help="Random zoom of image inputs by up to +-F (0.1 = 90%..110%).")
@click.option("--val-fraction", default=0.1, show_default=True, type=float)
@click.option("--qat", is_flag=True, help="Then fine-tune with fake quantization and export a QDQ int8 ONNX model.")
@click.option("--qat-epochs", default=3, show_default=True, type=int)
@click.option("--qat-lr", default=5e-4, show_default=True, type=float)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on GPU.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT.state.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-samples", default=None, type=int, help="Use only the first N training samples.")
@click.option("--compare-scratch", is_flag=True,
              help="Also train the same student on hard labels only (same start, budget, data) and report the KD "
                   "gain; doubles the time.")
@json_option
@handle_errors
def distill_cmd(as_json: bool, no_amp: bool, data: str, val: str | None, out: str, **opts) -> None:
    """Distill a student from a teacher with temperature KD (+ optional feature KD, QAT).

    \b
    Examples:
      edgecompress distill --teacher examples/mnist_models.py:teacher --teacher-weights teacher.pt \\
          --student examples/mnist_models.py:student_small --data calibration_data/mnist_train.npz \\
          --val calibration_data/mnist_val.npz --out student.pt --epochs 15 --temperature 4 --alpha 0.7
      edgecompress distill --teacher examples/mnist_models.py:teacher --teacher-weights teacher.pt \\
          --student-from-teacher width=0.35 --data calibration_data/mnist_train.npz --out student.pt
      edgecompress distill --teacher examples/mnist_models.py:teacher --teacher-weights teacher.pt \\
          --student-from-pruned teacher.pruned.onnx --data calibration_data/mnist_train.npz --out student.pt
      torchrun --nproc-per-node 2 -m edgecompress distill ...   (DistributedDataParallel)
    """
    from ..distill import DistillConfig, distill

    cfg = DistillConfig(amp=not no_amp, feature_kd=tuple(opts.pop("feature_kd")), **opts)
    result = distill(cfg, data=data, out=out, val=val, progress=True)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    show_result(result, as_json, lambda r: _print(r, out))


def _print(result, out: str) -> None:
    from rich.table import Table

    rep = result.report
    table = Table(title=f"distill -> {out}")
    for col in ("model", "params", "MACs", f"val {rep.metric}"):
        table.add_column(col)
    table.add_row("teacher", f"{rep.teacher['params']:,}", f"{rep.teacher['macs']:,}", f"{rep.teacher_val_metric:.4f}")
    table.add_row("student", f"{rep.student['params']:,}", f"{rep.student['macs']:,}", f"{rep.val_metric:.4f}")
    if rep.scratch:
        table.add_row("student, hard labels only", f"{rep.student['params']:,}", f"{rep.student['macs']:,}",
                      f"{rep.scratch[rep.metric]:.4f}")
    if rep.qat:
        table.add_row("student int8 (ORT)", "", "", f"{rep.qat.get('int8_val_metric', float('nan')):.4f}")
    console().print(table)
    console().print(f"best epoch {rep.best_epoch}/{rep.epochs}, {rep.seconds:.1f} s" +
                    (f"; resumed at epoch {rep.resumed_from_epoch + 1}" if rep.resumed_from_epoch is not None else ""))
    if rep.scratch:
        gain = 100 * rep.scratch["kd_gain"]
        console().print(f"KD gain over the same student trained on hard labels only: {gain:+.2f} pt of val "
                        f"{rep.metric} ({rep.val_metric:.4f} vs {rep.scratch[rep.metric]:.4f}, {rep.data['val']} "
                        "val samples)" + (": distillation did not help here" if gain < 0 else ""))
    for note in rep.notes:
        console().print(f"note: {note}")
