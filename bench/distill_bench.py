"""Distillation benchmark on the shipped MNIST-5k: teacher, student from scratch, student with KD — side by side.

The teacher is an ensemble of 4 ResNets (448k parameters), each trained with cross-entropy and random affine
warps (rotation 12 deg, zoom 10 %, shift 2 px). The student (`student_small`, 7.7k parameters = 1/58) is trained
twice per seed with the same budget — epochs, batch size, optimizer, schedule, data and augmentation (by default
the teacher's; "consistent teaching": the teacher scores exactly the warped image the student sees) — once from
scratch (alpha = 0: cross-entropy on labels) and once with KD (default alpha = 1: Hinton's soft targets at T = 4).
Train on mnist_train (3000), pick the best epoch on mnist_val (500), report accuracy on mnist_eval (1000, never
seen in training or selection). `--student-rotate 0 --student-scale 0 --student-shift 0` gives Hinton's own
protocol (students see the plain images). Optionally (--qat) fine-tune the first seed's KD student with fake
quantization and report the int8 ONNX model's accuracy under ONNX Runtime next to the fp32 student's.
The settings were chosen with bench/kd_sweep.py on seeds 10-17; results: bench/results/distill/.

    python bench/distill_bench.py --jobs 8 --seeds 0 1 2 3 4 5 6 7    # docs/distill.md (one GPU: ~4 min; 2 CPU cores: ~2.5 h)
    python bench/distill_bench.py --teacher-weights teacher.pt ...      # reuse a trained teacher
    python bench/distill_bench.py --seeds 0 --student-epochs 2 --teacher-epochs 1   # quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgecompress.distill import DistillConfig, distill, load_student  # noqa: E402

MODELS = ROOT / "examples" / "mnist_models.py"
DATA = ROOT / "calibration_data"
TRAIN, VAL, EVAL = DATA / "mnist_train.npz", DATA / "mnist_val.npz", DATA / "mnist_eval.npz"


def accuracy(model: torch.nn.Module, npz: Path) -> float:
    z = np.load(npz)
    x, y = torch.from_numpy(z["input"]), torch.from_numpy(z["labels"])
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return float((pred == y).float().mean())


def _train(kw: dict, out: str, threads: int) -> dict:
    """One distill run (in a worker process): returns the report's numbers."""
    torch.set_num_threads(threads)
    r = distill(DistillConfig(**kw), data=TRAIN, val=VAL, out=out)
    return {"val": r.report.val_metric, "seconds": r.report.seconds, "device": r.report.device,
            "student_params": r.report.student["params"], "teacher_params": r.report.teacher["params"],
            "best_epoch": r.report.best_epoch, "qat": r.report.qat}


def _pool(jobs: int):
    if jobs <= 1:
        return None
    import multiprocessing as mp

    return ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"))


def _run_all(pool, tasks: list[tuple[dict, str]], threads: int) -> list[dict]:
    if pool is None:
        return [_train(kw, out, threads) for kw, out in tasks]
    return list(pool.map(_train, [kw for kw, _ in tasks], [o for _, o in tasks], [threads] * len(tasks)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default=f"{MODELS}:student_small")
    ap.add_argument("--teacher", default=f"{MODELS}:teacher_ensemble",
                    help="the teacher SPEC (default: an ensemble of --members networks)")
    ap.add_argument("--member", default=f"{MODELS}:teacher", help="SPEC of one ensemble member")
    ap.add_argument("--members", type=int, default=4, help="ensemble size (the --teacher factory's default)")
    ap.add_argument("--teacher-weights", default=None, help="reuse trained teacher weights (else train them)")
    ap.add_argument("--teacher-epochs", type=int, default=100)
    ap.add_argument("--teacher-rotate", type=float, default=12.0, help="teacher augmentation: rotation (deg)")
    ap.add_argument("--teacher-scale", type=float, default=0.1, help="teacher augmentation: zoom fraction")
    ap.add_argument("--teacher-shift", type=int, default=2, help="teacher augmentation: translation (px)")
    ap.add_argument("--student-epochs", type=int, default=40)
    ap.add_argument("--student-rotate", type=float, default=12.0,
                    help="student augmentation, the same for scratch and KD (0 0 0: Hinton's plain images)")
    ap.add_argument("--student-scale", type=float, default=0.1)
    ap.add_argument("--student-shift", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=1.0, help="KD weight of the KD runs (1: soft targets only)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--qat", action="store_true", help="also QAT the first seed's KD student and check it in ORT")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--workdir", default=None, help="keep checkpoints here (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="distill-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool = _pool(args.jobs)
    common = dict(lr=args.lr, batch_size=args.batch_size, device=args.device)

    from edgecompress.distill.models import load_factory, load_weights

    tw = args.teacher_weights
    members_acc: list[float] = []
    if tw is None:
        tasks = [(dict(common, teacher=args.member, student=args.member, alpha=0.0, epochs=args.teacher_epochs,
                       seed=10 + k, augment_rotate=args.teacher_rotate, augment_scale=args.teacher_scale,
                       augment_shift=args.teacher_shift), str(work / f"member{k}.pt")) for k in range(args.members)]
        for (_, out), r in zip(tasks, _run_all(pool, tasks, args.threads), strict=True):
            print(f"teacher member {Path(out).stem} trained: val {r['val']:.4f} ({r['seconds']:.0f} s)",
                  file=sys.stderr)
        teacher = load_factory(args.teacher)
        state = {}
        for k, (_, out) in enumerate(tasks):
            m = load_student(out)
            members_acc.append(accuracy(m, EVAL))
            state.update({f"members.{k}.{n}": v for n, v in m.state_dict().items()})
        teacher.load_state_dict(state)
        tw = str(work / "teacher.pt")
        torch.save(teacher.state_dict(), tw)
    teacher = load_factory(args.teacher)
    load_weights(teacher, tw, "teacher weights")
    t_acc = accuracy(teacher, EVAL)
    t_sha = hashlib.sha256(Path(tw).read_bytes()).hexdigest()

    student_aug = dict(augment_rotate=args.student_rotate, augment_scale=args.student_scale,
                       augment_shift=args.student_shift)
    tasks, keys = [], []
    for seed in args.seeds:
        for name, alpha in (("scratch", 0.0), ("kd", args.alpha)):
            kw = dict(common, teacher=args.teacher, teacher_weights=tw, student=args.student, alpha=alpha,
                      temperature=args.temperature, epochs=args.student_epochs, seed=seed, **student_aug,
                      qat=args.qat and name == "kd" and seed == args.seeds[0])
            tasks.append((kw, str(work / f"student_{name}_s{seed}.pt")))
            keys.append((seed, name))
    results = _run_all(pool, tasks, args.threads)
    rows: dict[int, dict] = {}
    for (seed, name), (_, out), r in zip(keys, tasks, results, strict=True):
        row = rows.setdefault(seed, {"seed": seed})
        row[name] = accuracy(load_student(out), EVAL)
        row[name + "_val"] = r["val"]
        row[name + "_epoch"] = r["best_epoch"]
        row["student_params"], row["teacher_params"], row["device"] = (r["student_params"], r["teacher_params"],
                                                                       r["device"])
        if r["qat"]:
            row["qat"] = _qat_eval(r["qat"], EVAL, row[name])
        print(f"seed {seed} {name}: eval {row[name]:.4f} (val {r['val']:.4f}, best epoch {r['best_epoch']}, "
              f"{r['seconds']:.0f} s)", file=sys.stderr)
    if pool is not None:
        pool.shutdown()
    rows_l = [rows[s] for s in args.seeds]

    def means(sel: list[dict]) -> tuple[float, float]:
        return statistics.mean(r["scratch"] for r in sel), statistics.mean(r["kd"] for r in sel)

    sc, kd = means(rows_l[:3])
    res = {
        "teacher_eval_acc": t_acc, "teacher_members_eval_acc": members_acc, "teacher_weights_sha256": t_sha,
        "teacher_params": rows_l[0]["teacher_params"],
        "student": args.student, "student_params": rows_l[0]["student_params"],
        "param_ratio": rows_l[0]["student_params"] / rows_l[0]["teacher_params"],
        "seeds_for_acceptance": args.seeds[:3],
        "scratch_mean": sc, "kd_mean": kd, "kd_minus_scratch_pt": 100 * (kd - sc),
        "teacher_minus_kd_pt": 100 * (t_acc - kd),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "workdir")},
        "rows": rows_l, "seconds": time.perf_counter() - t0, "device": rows_l[0]["device"],
        "gpu": (torch.cuda.get_device_name(0) if torch.cuda.is_available() and rows_l[0]["device"] != "cpu"
                else None),
    }
    if len(rows_l) > 3:
        sc_all, kd_all = means(rows_l)
        diffs = [100 * (r["kd"] - r["scratch"]) for r in rows_l]
        res.update(scratch_mean_all=sc_all, kd_mean_all=kd_all, kd_minus_scratch_pt_all=100 * (kd_all - sc_all),
                   kd_minus_scratch_se_all=statistics.stdev(diffs) / len(diffs) ** 0.5)
    aug = ("none" if not any(student_aug.values()) else
           f"rotate {args.student_rotate} scale {args.student_scale} shift {args.student_shift}")
    print(f"\nMNIST-5k (train 3000 / val 500 / eval 1000); teacher {res['teacher_params']:,} params "
          f"({args.members} members, {args.teacher_epochs} epochs, rotate {args.teacher_rotate} scale "
          f"{args.teacher_scale} shift {args.teacher_shift}); student {res['student_params']:,} params = "
          f"1/{1 / res['param_ratio']:.1f}; T={args.temperature} alpha={args.alpha} epochs={args.student_epochs} "
          f"student augmentation: {aug}; device {res['device']} {res['gpu'] or ''}")
    print(f"{'seed':>6} {'scratch':>9} {'KD':>9} {'KD-scratch':>11}")
    for r in rows_l:
        print(f"{r['seed']:>6} {100 * r['scratch']:>8.2f}% {100 * r['kd']:>8.2f}% "
              f"{100 * (r['kd'] - r['scratch']):>+10.2f}")
    print(f"{'mean':>6} {100 * sc:>8.2f}% {100 * kd:>8.2f}% {res['kd_minus_scratch_pt']:>+10.2f}   "
          f"(seeds {', '.join(map(str, args.seeds[:3]))})")
    if len(rows_l) > 3:
        print(f"{'all':>6} {100 * res['scratch_mean_all']:>8.2f}% {100 * res['kd_mean_all']:>8.2f}% "
              f"{res['kd_minus_scratch_pt_all']:>+10.2f}   ({len(rows_l)} seeds, standard error "
              f"{res['kd_minus_scratch_se_all']:.2f} pt)")
    members = ", ".join(f"{100 * a:.2f}%" for a in members_acc)
    print(f"teacher (eval): {100 * t_acc:.2f}%{f' (members {members})' if members else ''}   "
          f"teacher - KD student: {res['teacher_minus_kd_pt']:+.2f} pt   (weights sha256 {t_sha[:16]}...)")
    for r in rows_l:
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
