"""Prune benchmark: fp32 latency before/after pruning, prune + int8, and MNIST accuracy with/without
reconstruction, all measured side by side in one run (ratios only; the machine may be shared).

    .venv/bin/python bench/prune_bench.py            # everything (5-30 minutes on the shared 2-core machine)
    .venv/bin/python bench/prune_bench.py --quick    # smaller inputs and fewer runs

Sections:
  latency   ResNet-18-like (224x224) and MobileNetV2-like: original fp32 vs pruned at several MAC targets
            (and ResNet at 50 % with --round-to 16),
            and pruned + int8 (edgecompress.quantize when importable, else ORT quantize_static QDQ U8S8 per-channel),
            one ORT thread, runs interleaved round-robin so every model sees the same machine load.
  accuracy  MNIST teacher (examples/mnist_models.py), trained briefly on mnist_train.npz, exported with
            BatchNormalization kept (TorchScript, do_constant_folding=False) and folded (dynamo), pruned to 50 %
            of the MACs with and without least-squares reconstruction; accuracy on mnist_eval.npz.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecompress.data import FeedData, load_data  # noqa: E402
from edgecompress.onnxgraph.runtime import make_session  # noqa: E402
from edgecompress.prune import PruneConfig, prune  # noqa: E402

DATA = ROOT / "calibration_data"


def export(model, x, path: Path, *, dynamo: bool = False, keep_bn: bool = False) -> Path:
    import torch

    model.eval()
    if dynamo:
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"])
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                          do_constant_folding=not keep_bn, opset_version=17)
    return path


def quantize_int8(src: Path, dst: Path, calib: FeedData) -> str:
    try:
        from edgecompress.quantize import QuantizeConfig, quantize

        # static per-channel MinMax; format and activation type chosen by edgecompress, timed on this machine
        cfg = QuantizeConfig(mode="static", method="minmax", per_channel=True, allow_slower=True, max_drop=0.5)
        r = quantize(str(src), cfg, out=str(dst), calibration=calib).report
        return f"edgecompress.quantize (static {r.format} {r.activation_type}/int8 per-channel minmax)"
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - the other developer's stage may still be in progress; say so
        print(f"  (edgecompress.quantize failed: {type(exc).__name__}: {str(exc)[:160]}; using ORT quantize_static)")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib.feeds())

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return "onnxruntime.quantization.quantize_static (QDQ, U8S8, per-channel, minmax)"


def timed(paths: dict[str, Path], feed: dict, runs: int, warmup: int = 2) -> tuple[dict[str, float], dict[str, float]]:
    """One ORT thread, runs interleaved round-robin. Returns (median latency ms, median per-round speedup vs the
    first model): the per-round ratio cancels load changes between rounds on a shared machine."""
    sessions = {k: make_session(str(p), threads=1) for k, p in paths.items()}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(warmup):
        for s in sessions.values():
            s.run(None, feed)
    for _ in range(runs):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feed)
            times[k].append((time.perf_counter() - t) * 1e3)
    base = np.asarray(times[next(iter(paths))])
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratio = {k: float(np.median(base / np.asarray(v))) for k, v in times.items()}
    return med, ratio


def latency_section(tmp: Path, quick: bool) -> None:
    import torch

    from examples import zoo

    size = 112 if quick else 224
    runs = 5 if quick else 25
    # random weights and inputs: speed is the subject, so the fidelity budget is off (max_drop 1)
    half = PruneConfig(target_macs=0.5, max_drop=1.0)
    variants = {
        "resnet18_like": (zoo.resnet18_like, {"pruned 0.75": PruneConfig(target_macs=0.75, max_drop=1.0),
                                              "pruned 0.50": half,
                                              "pruned 0.50 r16": PruneConfig(target_macs=0.5, round_to=16,
                                                                             max_drop=1.0),
                                              "pruned 0.50 r32": PruneConfig(target_macs=0.5, round_to=32,
                                                                             max_drop=1.0)}),
        "mobilenetv2_like": (zoo.mobilenetv2_like, {"pruned 0.50": half}),
    }
    for name, (factory, configs) in variants.items():
        torch.manual_seed(0)
        x = torch.randn(1, 3, size, size)
        src = export(factory(), x, tmp / f"{name}.onnx")
        rng = np.random.default_rng(0)
        calib = FeedData.from_arrays({"input": rng.standard_normal((8, 3, size, size)).astype(np.float32)})
        paths = {"fp32": src}
        reports = {}
        hows = set()
        for label, cfg in configs.items():
            out = tmp / f"{name}_{len(paths)}.onnx"
            reports[label] = prune(str(src), cfg, out=str(out)).report
            paths[label] = out
            if cfg.target_macs == 0.5:
                q = tmp / f"{name}_{len(paths)}_int8.onnx"
                hows.add(quantize_int8(out, q, calib))
                paths[f"{label} + int8"] = q
                reports[f"{label} + int8"] = reports[label]
        hows.add(quantize_int8(src, tmp / f"{name}_int8.onnx", calib))
        paths["int8 (unpruned)"] = tmp / f"{name}_int8.onnx"
        lat, speedup = timed(paths, {"input": x.numpy()}, runs)
        print(f"\n[{name} {size}x{size}, 1 thread, {runs} interleaved rounds; speedup = median per-round ratio]  int8 via {'; '.join(sorted(hows))}")
        print(f"  {'model':<24}{'MACs kept':>10}{'params kept':>12}{'latency ms':>12}{'speedup':>9}")
        for key in paths:
            rep = reports.get(key)
            mk = f"{rep.macs_kept:.3f}" if rep else "1.000"
            pk = f"{rep.params_kept:.3f}" if rep else "1.000"
            print(f"  {key:<24}{mk:>10}{pk:>12}{lat[key]:>12.2f}{speedup[key]:>8.2f}x")


def train_teacher(quick: bool):
    import torch

    from examples import mnist_models

    torch.manual_seed(0)
    torch.set_num_threads(2)
    z = np.load(DATA / "mnist_train.npz")
    x, y = torch.from_numpy(z["input"]), torch.from_numpy(z["labels"])
    model = mnist_models.teacher()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    epochs = 1 if quick else 3
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i: i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def accuracy_section(tmp: Path, quick: bool) -> None:
    import torch

    model = train_teacher(quick)
    x = torch.zeros(1, 1, 28, 28)
    calib = load_data(DATA / "mnist_calibration.npz")
    evald = load_data(DATA / "mnist_eval.npz")
    print("\n[MNIST teacher (ResNet-like, residual adds), 50 % of MACs removed, no retraining; "
          f"calibration {min(256, calib.n)} samples, eval {evald.n} samples]")
    print(f"  {'graph':<24}{'criterion':<11}{'MACs kept':>10}{'acc fp32':>10}{'acc pruned':>12}{'+recon':>9}"
          f"{'drop (pt)':>11}")
    for label, kw in (("Conv+BN (TorchScript)", {"keep_bn": True}), ("folded Conv (dynamo)", {"dynamo": True})):
        src = export(model, x, tmp / f"teacher_{label[:4]}.onnx", **kw)
        for crit in ("l2", "activation"):
            cfg = PruneConfig(target_macs=0.5, criterion=crit, samples=256, max_drop=1.0)  # the drop is reported
            res = prune(str(src), cfg, out=str(tmp / "t.onnx"), calibration=calib, eval_data=evald)
            r = res.report
            fid, raw = r.fidelity, r.fidelity_without_reconstruction or r.fidelity
            drop = 100 * (fid.accuracy_input - fid.accuracy_pruned)
            print(f"  {label:<24}{crit:<11}{r.macs_kept:>10.3f}{fid.accuracy_input:>10.4f}{raw.accuracy_pruned:>12.4f}"
                  f"{fid.accuracy_pruned:>9.4f}{drop:>11.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("latency", "accuracy"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prune_bench_") as d:
        tmp = Path(d)
        if args.only in (None, "accuracy"):
            accuracy_section(tmp, args.quick)
        if args.only in (None, "latency"):
            latency_section(tmp, args.quick)


if __name__ == "__main__":
    main()
