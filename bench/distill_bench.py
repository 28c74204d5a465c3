"""Distillation benchmark on the shipped MNIST-5k: teacher, student from scratch, student with KD — side by side.

Same student, same seeds, same budget (epochs, batch size, optimizer, schedule); the only difference between
"scratch" and "KD" is the loss (alpha = 0: cross-entropy on labels only; alpha > 0: Hinton KD mixed with CE).
Train on mnist_train (3000), pick the best epoch on mnist_val (500), report accuracy on mnist_eval (1000, never
seen in training or selection). Optionally (--qat) fine-tune the seed-0 KD student with fake quantization and
report the int8 ONNX model's accuracy under ONNX Runtime next to the fp32 student's.

    .venv/bin/python bench/distill_bench.py                      # defaults used for docs/distill.md
    .venv/bin/python bench/distill_bench.py --seeds 0 --student-epochs 5 --teacher-epochs 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgecompress.distill import DistillConfig, distill, load_student  # noqa: E402

MODELS = ROOT / "examples" / "mnist_models.py"
DATA = ROOT / "calibration_data"


def accuracy(model: torch.nn.Module, npz: Path) -> float:
    z = np.load(npz)
    x, y = torch.from_numpy(z["input"]), torch.from_numpy(z["labels"])
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return float((pred == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default=f"{MODELS}:student_small")
    ap.add_argument("--teacher", default=f"{MODELS}:teacher")
    ap.add_argument("--teacher-weights", default=None, help="reuse trained teacher weights (else train one)")
    ap.add_argument("--teacher-epochs", type=int, default=25)
    ap.add_argument("--student-epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--augment-shift", type=int, default=2, help="random shift (pixels) for teacher and students")
    ap.add_argument("--qat", action="store_true", help="also QAT the seed-0 KD student and check it in ORT")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--workdir", default=None, help="keep checkpoints here (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="distill-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    train, val, ev = DATA / "mnist_train.npz", DATA / "mnist_val.npz", DATA / "mnist_eval.npz"
    t0 = time.perf_counter()

    tw = args.teacher_weights
    if tw is None:
        tw = str(work / "teacher.pt")
        cfg = DistillConfig(teacher=args.teacher, student=args.teacher, alpha=0.0, epochs=args.teacher_epochs,
                            lr=args.lr, batch_size=args.batch_size, seed=0, device=args.device,
                            augment_shift=args.augment_shift)
        r = distill(cfg, data=train, val=val, out=tw)
        print(f"teacher trained: val {r.report.val_metric:.4f} ({r.report.seconds:.0f} s)", file=sys.stderr)
    from edgecompress.distill.models import load_factory, load_weights

    teacher = load_factory(args.teacher)
    load_weights(teacher, tw, "teacher weights")
    t_acc = accuracy(teacher, ev)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for name, alpha in (("scratch", 0.0), ("kd", args.alpha)):
            out = work / f"student_{name}_s{seed}.pt"
            cfg = DistillConfig(teacher=args.teacher, teacher_weights=tw, student=args.student, alpha=alpha,
                                temperature=args.temperature, epochs=args.student_epochs, lr=args.lr,
                                batch_size=args.batch_size, seed=seed, augment_shift=args.augment_shift,
                                device=args.device,
                                qat=args.qat and name == "kd" and seed == args.seeds[0])
            r = distill(cfg, data=train, val=val, out=out)
            row[name] = accuracy(load_student(out), ev)
            row[name + "_val"] = r.report.val_metric
            row["student_params"] = r.report.student["params"]
            row["teacher_params"] = r.report.teacher["params"]
            if r.report.qat:
                row["qat"] = _qat_eval(r.report.qat, ev, row[name])
            print(f"seed {seed} {name}: eval {row[name]:.4f} (val {r.report.val_metric:.4f}, "
                  f"{r.report.seconds:.0f} s)", file=sys.stderr)
        rows.append(row)

    sc = [r["scratch"] for r in rows]
    kd = [r["kd"] for r in rows]
    res = {
        "teacher_eval_acc": t_acc, "teacher_params": rows[0]["teacher_params"],
        "student": args.student, "student_params": rows[0]["student_params"],
        "param_ratio": rows[0]["student_params"] / rows[0]["teacher_params"],
        "scratch_mean": statistics.mean(sc), "kd_mean": statistics.mean(kd),
        "kd_minus_scratch_pt": 100 * (statistics.mean(kd) - statistics.mean(sc)),
        "teacher_minus_kd_pt": 100 * (t_acc - statistics.mean(kd)),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "workdir")},
        "rows": rows, "seconds": time.perf_counter() - t0, "device": r.report.device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and r.report.device != "cpu" else None,
    }
    print(f"\nMNIST-5k (train 3000 / val 500 / eval 1000), {len(args.seeds)} seeds, student "
          f"{res['student_params']:,} params = 1/{1 / res['param_ratio']:.1f} of the teacher's "
          f"{res['teacher_params']:,}; T={args.temperature} alpha={args.alpha} epochs={args.student_epochs} "
          f"shift={args.augment_shift}; device {res['device']} {res['gpu'] or ''}")
    print(f"{'seed':>6} {'scratch':>9} {'KD':>9} {'KD-scratch':>11}")
    for r in rows:
        print(f"{r['seed']:>6} {100 * r['scratch']:>8.2f}% {100 * r['kd']:>8.2f}% {100 * (r['kd'] - r['scratch']):>+10.2f}")
    print(f"{'mean':>6} {100 * res['scratch_mean']:>8.2f}% {100 * res['kd_mean']:>8.2f}% "
          f"{res['kd_minus_scratch_pt']:>+10.2f}")
    print(f"teacher (eval): {100 * t_acc:.2f}%   teacher - KD student: {res['teacher_minus_kd_pt']:+.2f} pt")
    for r in rows:
        if "qat" in r:
            q = r["qat"]
            print(f"QAT (seed {r['seed']}): fp32 student {100 * q['fp32_eval']:.2f}%  int8 ONNX in ORT "
                  f"{100 * q['int8_eval']:.2f}%  (drop {100 * (q['fp32_eval'] - q['int8_eval']):+.2f} pt; "
                  f"int8 kernels {q['int8_ops']})")
    print(f"total {res['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


def _qat_eval(qat: dict, ev: Path, fp32_eval: float) -> dict:
    from edgecompress.onnxgraph.runtime import make_session

    z = np.load(ev)
    sess = make_session(qat["onnx"], threads=1)
    name = sess.get_inputs()[0].name
    pred = np.concatenate([sess.run(None, {name: z["input"][i:i + 500]})[0].argmax(1)
                           for i in range(0, len(z["input"]), 500)])
    return {"fp32_eval": fp32_eval, "int8_eval": float((pred == z["labels"]).mean()),
            "int8_ops": qat.get("int8_ops"), "int8_val": qat.get("int8_val_metric"),
            "fp32_val": qat.get("fp32_val_metric")}


if __name__ == "__main__":
    main()
