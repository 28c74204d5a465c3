"""KD gain with the distill defaults, measured by the tool itself (`distill(..., compare_scratch=True)`).

Per task and seed: the student distilled from the teacher with every DistillConfig default (T, alpha, epochs,
lr, schedule), and the same student from the same initial weights trained on hard labels only with the same
budget; the gain is the tool's `report.scratch["kd_gain"]` (val accuracy, best epoch on val for both), and
both students' accuracy on the task's eval split (never seen by training or selection) is printed beside it.

    python bench/kd_gain.py --seeds 0 1 2 --out bench/results/distill/kd_gain.json

Tasks: MNIST-5k (the demo's teacher, examples/weights/mnist_teacher.pt; student `student_small`), digits
(teacher `digits_teacher` trained first by scripts/train_demo_teacher.py into --work; student `student`) and
speech (voice activity of 36 ms chunks of the zoo's synthetic speech and noise, labels from the zoo's
annotations: train = the zoo's score split, val = its calibration split, eval = its eval split, each with other
sentences and voices; teacher `examples/audio_models.py:vad_teacher` trained first the same way, student
`vad_student`; needs the zoo: `make zoo`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from train_demo_teacher import accuracy as eval_acc  # noqa: E402

DATA = ROOT / "calibration_data"
MODELS = ROOT / "examples" / "mnist_models.py"


def speech_data(zoo: str | None, work: Path) -> None:
    """work/speech_{train,val,eval}.npz from the zoo's Silero VAD feeds: `input` [N, 1, 576] and per-chunk
    speech labels (1 when the chunk's samples are mostly inside a spoken sentence) from its annotations."""
    if all((work / f"speech_{k}.npz").is_file() for k in ("train", "val", "eval")):
        return
    from bench.zoo.prepare import load_zoo

    zm = load_zoo(zoo)["silero_vad_op15"]
    for split, name in (("score", "train"), ("calibration", "val"), ("eval", "eval")):
        folder = Path(getattr(zm, split))
        labels = json.loads((folder / "annotations.json").read_text())["speech"]
        files = sorted(folder.glob("*.npz"))
        assert len(files) == len(labels), (folder, len(files), len(labels))
        x = np.stack([np.load(f)["input"].astype(np.float32) for f in files])  # [N, 1, 576]
        np.savez(work / f"speech_{name}.npz", input=x, labels=np.asarray(labels, dtype=np.int64))


def main() -> None:
    from edgecompress.distill import DistillConfig, distill, load_student
    from edgecompress.distill.models import load_factory, load_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default="/tmp/kd_gain")
    ap.add_argument("--out", default=None, help="write the rows and means as JSON")
    ap.add_argument("--tasks", nargs="+", default=["mnist", "digits", "speech"])
    ap.add_argument("--zoo", default=None, help="the zoo cache (for the speech task; default: the zoo's own)")
    ap.add_argument("--speech-ensemble", action="store_true",
                    help="speech teacher: vad_ensemble (4 vad_teacher networks, seeds 0-3) instead of one")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="override DistillConfig defaults (a sweep), e.g. alpha=0.9 temperature=2 epochs=20")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    def train_teacher(dest: Path, *flags: str) -> None:
        """scripts/train_demo_teacher.py into `dest`, unless an earlier run left it there."""
        if not dest.is_file():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "train_demo_teacher.py"), "--epochs", "60",
                            *flags, "--out", str(dest)], check=True)

    digits_teacher = work / "digits_teacher.pt"
    if "digits" in args.tasks:
        train_teacher(digits_teacher, "--dataset", "digits", "--arch", "digits_teacher", "--shift", "1",
                      "--rotate", "8", "--scale", "0.05")
    audio = ROOT / "examples" / "audio_models.py"
    if "speech" in args.tasks:
        speech_data(args.zoo, work)
        members = [work / ("speech_teacher.pt" if k == 0 else f"speech_teacher_s{k}.pt")
                   for k in range(4 if args.speech_ensemble else 1)]
        for k, dest in enumerate(members):
            train_teacher(dest, "--dataset", "speech", "--data-dir", str(work), "--models", str(audio), "--arch",
                          "vad_teacher", "--train-only", "--seed", str(k))
        if args.speech_ensemble:
            import torch

            members = [torch.load(m, weights_only=True) for m in members]
            torch.save({f"members.{k}.{n}": v for k, m in enumerate(members) for n, v in m.items()},
                       work / "speech_ensemble.pt")
    tasks = {"mnist": (MODELS, "teacher_deep", ROOT / "examples" / "weights" / "mnist_teacher.pt", "student_small",
                       DATA),
             "digits": (MODELS, "digits_teacher", digits_teacher, "student", DATA),
             "speech": (audio, "vad_ensemble", work / "speech_ensemble.pt", "vad_student", work)
             if args.speech_ensemble else (audio, "vad_teacher", work / "speech_teacher.pt", "vad_student", work)}
    overrides = {k: json.loads(v) for k, _, v in (o.partition("=") for o in args.set)}
    rows = []
    for task in args.tasks:
        models, t_spec, t_weights, s_spec, data = tasks[task]
        teacher = load_factory(f"{models}:{t_spec}", "teacher")
        load_weights(teacher, str(t_weights), "teacher")
        t_eval = eval_acc(teacher, data / f"{task}_eval.npz")
        for seed in args.seeds:
            t0 = time.perf_counter()
            cfg = DistillConfig(teacher=f"{models}:{t_spec}", teacher_weights=str(t_weights),
                                student=f"{models}:{s_spec}", seed=seed, compare_scratch=True, amp=False,
                                **overrides)
            tag = "_".join(f"{k}{v}" for k, v in overrides.items())
            out = work / f"{task}_s{seed}{'_' + tag if tag else ''}.pt"
            r = distill(cfg, data=str(data / f"{task}_train.npz"), val=str(data / f"{task}_val.npz"), out=out)
            rep = r.report
            row = {"task": task, "seed": seed, "set": overrides, "kd_val": rep.val_metric, "scratch_val": rep.scratch["accuracy"],
                   "gain_pt": 100 * rep.scratch["kd_gain"], "kd_eval": eval_acc(load_student(out), data / f"{task}_eval.npz"),
                   "teacher_eval": t_eval, "params_ratio": rep.student["param_ratio"],
                   "epochs": rep.epochs, "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    print(f"\n{'task':8} {'seeds':>6} {'scratch':>9} {'KD':>9} {'gain':>7}  student/teacher params")
    for task in args.tasks:
        sel = [r for r in rows if r["task"] == task]
        s, k = np.mean([r["scratch_val"] for r in sel]), np.mean([r["kd_val"] for r in sel])
        summary[task] = {"scratch_val": s, "kd_val": k, "gain_pt": 100 * (k - s), "seeds": len(sel),
                         "params_ratio": sel[0]["params_ratio"]}
        print(f"{task:8} {len(sel):>6} {100 * s:8.2f}% {100 * k:8.2f}% {100 * (k - s):+6.2f}  "
              f"1/{1 / sel[0]['params_ratio']:.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary, "set": overrides, "defaults": {
            f: getattr(DistillConfig(teacher="a:b", student="a:b"), f)
            for f in ("epochs", "temperature", "alpha", "lr", "batch_size", "optimizer")}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
