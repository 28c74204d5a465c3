"""Overhead of `edgecompress bench` against a bare ONNX Runtime timing loop, and fp32 vs int8 A/B repeatability.

Side by side in one run, interleaved (ours, bare, bare, ours, ...), both in fresh processes with the same session
options (1 intra-op thread, all graph optimizations), on a ResNet-18-like (examples/zoo.py) at 1x3x224x224.
(Running both at once instead was tried and rejected: the bare loop starts first, so the tail of our run has less
contention, a start-skew bias of about -6%.)

  1. p50 overhead: median over rounds of (our p50 / bare-loop p50). Acceptance: within 3%.
  2. fp32 vs int8 (static QDQ) A/B: the interleaved ratio with its spread, measured twice in a row.
     Acceptance: the two runs' ratio_p50 agree within 5%.

    .venv/bin/python bench/bench_overhead.py [--rounds 5] [--runs 40] [--ab-runs 60] [--size 224] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BARE = r"""
import sys, time, numpy as np, onnxruntime as ort
path, runs, warmup, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
x = {s.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)}
s.run(None, x)
for _ in range(warmup):
    s.run(None, x)
lat = []
for _ in range(runs):
    t0 = time.perf_counter_ns(); s.run(None, x); lat.append((time.perf_counter_ns() - t0) / 1e6)
print(float(np.median(lat)))
"""


def build_models(folder: Path, size: int) -> tuple[Path, Path]:
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from examples.zoo import resnet18_like

    torch.manual_seed(0)
    net = resnet18_like().eval()
    fp32 = folder / "resnet18_like_fp32.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, size, size),), str(fp32), dynamo=False, input_names=["input"],
                      output_names=["logits"], opset_version=17)
    rng = np.random.default_rng(0)
    calib = [{"input": rng.standard_normal((1, 3, size, size)).astype(np.float32)} for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = folder / "resnet18_like_pre.onnx"  # folds the BN-fused biases into initializers so they quantize too
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    int8 = folder / "resnet18_like_int8.onnx"
    quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return fp32, int8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--ab-runs", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from edgecompress.bench import BenchConfig, bench

    with tempfile.TemporaryDirectory(prefix="edgecompress-bench-overhead-") as tmp:
        fp32, int8 = build_models(Path(tmp), args.size)
        cfg = BenchConfig(runs=args.runs, warmup=args.warmup, threads=(1,), coverage=False, interleave=False)
        ours, bare = [], []

        def run_ours() -> None:
            ours.append(bench([fp32], cfg).models[0].latency_ms["p50"])

        def run_bare() -> None:
            out = subprocess.run([sys.executable, "-c", BARE, str(fp32), str(args.runs), str(args.warmup),
                                  str(args.size)], capture_output=True, text=True, check=True, timeout=900)
            bare.append(float(out.stdout.strip().splitlines()[-1]))

        for r in range(args.rounds):  # alternate, flipping the order every round
            for fn in ((run_ours, run_bare) if r % 2 == 0 else (run_bare, run_ours)):
                fn()
            print(f"round {r + 1}: ours p50 {ours[-1]:.3f} ms, bare ORT loop p50 {bare[-1]:.3f} ms, "
                  f"ratio {ours[-1] / bare[-1]:.4f}", file=sys.stderr)
        per_round = np.asarray(ours) / np.asarray(bare)
        overhead = float(np.median(per_round))
        ab_cfg = BenchConfig(runs=args.ab_runs, warmup=args.warmup, threads=(1,), coverage=False)
        ab = []
        for k in range(2):
            rat = bench([fp32, int8], ab_cfg).ratios[0]
            ab.append(rat)
            print(f"A/B run {k + 1}: int8/fp32 latency ratio {rat.ratio_p50:.4f} (speedup {rat.speedup:.3f}x), "
                  f"spread p10-p90 {rat.spread['p10']:.4f}-{rat.spread['p90']:.4f}, IQR/median "
                  f"{rat.spread['iqr_rel']:.3f}, {rat.rounds} rounds of {rat.block}", file=sys.stderr)
        agree = abs(ab[0].ratio_p50 / ab[1].ratio_p50 - 1)
    result = {
        "model": f"resnet18_like 1x3x{args.size}x{args.size}, 1 thread",
        "overhead": {"ours_p50_ms": ours, "bare_p50_ms": bare, "per_round_ratio": per_round.tolist(),
                     "median_ratio": overhead, "ratio_p25_p75": np.percentile(per_round, [25, 75]).tolist(),
                     "within_3pct": abs(overhead - 1) <= 0.03},
        "ab_fp32_vs_int8": {"runs": [r.to_dict() for r in ab], "consecutive_disagreement": agree,
                            "within_5pct": agree <= 0.05},
    }
    q25, q75 = np.percentile(per_round, [25, 75])
    print(f"p50 overhead vs bare ORT loop: {100 * (overhead - 1):+.2f}% (median of {args.rounds} interleaved rounds; "
          f"per-round ratio IQR {q25:.3f}-{q75:.3f})"
          f" -> {'PASS' if result['overhead']['within_3pct'] else 'FAIL'} (|overhead| <= 3%)", file=sys.stderr)
    print(f"int8/fp32 ratio, two consecutive runs: {ab[0].ratio_p50:.4f} vs {ab[1].ratio_p50:.4f} "
          f"({100 * agree:.2f}% apart) -> {'PASS' if result['ab_fp32_vs_int8']['within_5pct'] else 'FAIL'} (<= 5%)",
          file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
