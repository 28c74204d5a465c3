"""Train the built-in demo's teacher (examples/mnist_models.py) on the shipped MNIST-5k and write its weights.

The teacher is trained by the project's own trainer (`edgecompress.distill` with cross-entropy only: alpha 0,
the model is its own "teacher") under random affine warps, on the train split plus the calibration split
(3,500 images; calibrating int8 on images the float model saw is ordinary practice), with the best epoch kept
on the val split. The eval split is never seen; its accuracy is printed. One run takes ~1 min on one GPU
(much longer on a CPU). The demo ships the result as examples/weights/mnist_teacher.pt.

    python scripts/train_demo_teacher.py --out examples/weights/mnist_teacher.pt
    python scripts/train_demo_teacher.py --arch teacher --seed 1 --epochs 150 --out /tmp/t.pt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DATA = ROOT / "calibration_data"
MODELS = ROOT / "examples" / "mnist_models.py"


def accuracy(model: torch.nn.Module, npz: Path) -> float:
    z = np.load(npz)
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(z["input"]).float()).argmax(1).numpy()
    return float((pred == z["labels"]).mean())


def main() -> None:
    from edgecompress.distill import DistillConfig, distill
    from edgecompress.distill.models import load_factory, load_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="teacher_deep", help="factory in examples/mnist_models.py")
    ap.add_argument("--out", required=True, help="where to write the weights (a state_dict .pt)")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--rotate", type=float, default=12.0)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--shift", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-only", action="store_true", help="train on the train split alone (not + calibration)")
    ap.add_argument("--dataset", default="mnist", help="DATA_DIR/<dataset>_{train,calibration,val,eval}.npz")
    ap.add_argument("--data-dir", default=str(DATA), help="where the splits are (default: calibration_data/)")
    ap.add_argument("--models", default=str(MODELS), help="the .py file holding --arch")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--progress", action="store_true", help="a progress bar / one line per epoch on stderr")
    args = ap.parse_args()

    spec = f"{args.models}:{args.arch}"
    data_dir = Path(args.data_dir)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tr = np.load(data_dir / f"{args.dataset}_train.npz")
        x, y = tr["input"], tr["labels"]
        if not args.train_only:
            cal = np.load(data_dir / f"{args.dataset}_calibration.npz")
            x, y = np.concatenate([x, cal["input"]]), np.concatenate([y, cal["labels"]])
        data = Path(tmp) / "train.npz"
        np.savez(data, input=x, labels=y)
        cfg = DistillConfig(teacher=spec, student=spec, alpha=0.0, epochs=args.epochs, lr=args.lr,
                            weight_decay=args.weight_decay, augment_rotate=args.rotate, augment_scale=args.scale,
                            augment_shift=args.shift, seed=args.seed, device=args.device, amp=False)
        res = distill(cfg, data=str(data), val=str(data_dir / f"{args.dataset}_val.npz"), out=Path(tmp) / "t.pt",
                      progress=args.progress)
        model = load_factory(spec, "teacher")
        load_weights(model, str(res.artifact.path), "teacher")
    model.cpu()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    row = {"dataset": args.dataset, "arch": args.arch, "seed": args.seed, "epochs": args.epochs, "train_samples": int(len(y)),
           "val": res.report.val_metric, "best_epoch": res.report.best_epoch,
           "eval": accuracy(model, data_dir / f"{args.dataset}_eval.npz"), "params": res.report.student["params"],
           "macs": res.report.student["macs"], "seconds": round(time.perf_counter() - t0, 1), "sha256": sha,
           "out": str(out)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
