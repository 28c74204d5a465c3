#!/usr/bin/env python
"""fp32 vs ONNX Runtime's quantize_static defaults vs `edgecompress quantize` defaults, side by side, 1 thread.

Zoo: ResNet-18-like (224), MobileNetV2-like (224), BERT-like encoder (6 layers, hidden 384, seq 128) with random
weights and synthetic inputs; a CNN, a depthwise net and a small transformer trained briefly on
calibration_data/mnist_train.npz (fidelity = top-1 accuracy on mnist_eval.npz).
Speed ratios are medians of per-round ratios from interleaved runs of the three models on the same feed.
Also: peak RSS of histogram calibration with 32 vs 512 samples (each in its own subprocess), edgecompress's
streaming histogram vs ORT's own histogram (entropy) calibrator.

    .venv/bin/python bench/quantize_vs_ort.py [--only resnet18,bert] [--json-out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecompress.data import FeedData, load_data  # noqa: E402
from edgecompress.errors import EdgecompressError  # noqa: E402
from edgecompress.fsutil import private_tempdir, working_directory  # noqa: E402
from edgecompress.onnxgraph.runtime import make_session, run_all  # noqa: E402
from edgecompress.onnxgraph.timing import time_side_by_side  # noqa: E402
from edgecompress.quantize import QuantizeConfig, quantize  # noqa: E402
from edgecompress.quantize.calibration import FeedReader  # noqa: E402

DATA = ROOT / "calibration_data"
ACCEPT = {"resnet18": 3.3, "mobilenetv2": 2.1, "bert": 2.2}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def export(model, example, path: Path, input_name: str) -> Path:
    import torch

    torch.onnx.export(model.eval(), example, str(path), input_names=[input_name], output_names=["logits"],
                      dynamo=False, opset_version=17)
    return path


def train_mnist(model, epochs: int = 2, n: int = 3000, batch: int = 32):
    import torch

    torch.manual_seed(0)
    z = np.load(DATA / "mnist_train.npz")
    x, y = torch.tensor(z["input"][:n]), torch.tensor(z["labels"][:n])
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def build_zoo(work: Path, only: set[str]) -> list[dict]:
    import torch

    from examples import mnist_models, zoo

    rng = np.random.default_rng(0)
    cases = []
    torch.manual_seed(0)
    for key, factory in (("resnet18", zoo.resnet18_like), ("mobilenetv2", zoo.mobilenetv2_like)):
        if only and key not in only:
            continue
        log(f"export {key}")
        p = export(factory(), torch.randn(1, 3, 224, 224), work / f"{key}.onnx", "input")
        cal = FeedData.from_arrays({"input": rng.standard_normal((32, 1, 3, 224, 224)).astype(np.float32)[:, 0]})
        ev = FeedData.from_arrays({"input": rng.standard_normal((16, 3, 224, 224)).astype(np.float32)})
        cases.append({"name": f"{key}_like (224, random weights)", "key": key, "path": p, "cal": cal, "eval": ev})
    if not only or "bert" in only:
        log("export bert")
        p = export(zoo.bert_like(), torch.randint(0, 30522, (1, 128)), work / "bert.onnx", "input_ids")
        cal = FeedData.from_arrays({"input_ids": rng.integers(0, 30522, (32, 128)).astype(np.int64)})
        ev = FeedData.from_arrays({"input_ids": rng.integers(0, 30522, (16, 128)).astype(np.int64)})
        cases.append({"name": "bert_like (6x384, seq 128, random weights)", "key": "bert", "path": p, "cal": cal,
                      "eval": ev})
    mnist_cal = load_data(DATA / "mnist_calibration.npz")
    mnist_eval = load_data(DATA / "mnist_eval.npz")
    for key, factory in (("mnist_cnn", lambda: mnist_models.MnistResNet(width=16)),
                         ("mnist_depthwise", zoo.mnist_depthwise), ("mnist_transformer", zoo.tiny_transformer)):
        if only and key not in only:
            continue
        log(f"train {key}")
        p = export(train_mnist(factory()), torch.randn(1, 1, 28, 28), work / f"{key}.onnx", "input")
        cases.append({"name": f"{key} (trained)", "key": key, "path": p, "cal": mnist_cal, "eval": mnist_eval})
    return cases


def ort_default(src: Path, dest: Path, cal: FeedData) -> Path:
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with private_tempdir() as tmp, working_directory(tmp):
        pre = tmp / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre))
        except Exception:  # noqa: BLE001 - ORT's documented fallback for models symbolic shape inference rejects
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dest), FeedReader(cal))
    return dest


def fidelity(ref: list[np.ndarray], got: list[np.ndarray], labels) -> dict:
    r = np.concatenate([x.reshape(1, -1) for x in ref]).astype(np.float64)
    g = np.concatenate([x.reshape(1, -1) for x in got]).astype(np.float64)
    cos = float(np.mean((r * g).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1) + 1e-30)))
    out = {"cosine": cos, "top1_agreement": float((r.argmax(1) == g.argmax(1)).mean())}
    if labels is not None:
        out["accuracy"] = float((g.argmax(1) == labels).mean())
    return out


def run_case(case: dict, work: Path) -> dict:
    name, src = case["name"], case["path"]
    log(f"{name}: ORT quantize_static defaults")
    ort_path, ort_error = work / f"{case['key']}.ort.onnx", None
    try:
        ort_default(src, ort_path, case["cal"])
        make_session(str(ort_path), threads=1, origin="ORT-quantized model")
    except Exception as exc:  # noqa: BLE001 - ORT's defaults can fail to quantize or to load: that is a result
        ort_error = " ".join(str(exc).split())[:200]
        log(f"{name}: ORT default quantization failed: {ort_error}")
    log(f"{name}: edgecompress quantize defaults")
    ec_path = work / f"{case['key']}.ec.onnx"
    t0 = time.perf_counter()
    ec_report, ec_exit = None, 0
    try:
        res = quantize(src, QuantizeConfig(), out=ec_path, calibration=case["cal"], eval_data=case["eval"])
        ec_report = res.report.to_dict()
    except EdgecompressError as exc:
        ec_exit = exc.exit_code
        ec_report = exc.report if isinstance(exc.report, dict) else None
        log(f"{name}: edgecompress exited {exc.exit_code}: {exc.message}")
    ec_seconds = time.perf_counter() - t0
    models = {"fp32": src}
    if ort_error is None:
        models["ort"] = ort_path
    if ec_path.is_file():
        models["edgecompress"] = ec_path
    labels = case["eval"].labels
    ref = None
    fid = {}
    for k, p in models.items():
        outs = run_all(make_session(str(p), threads=1), case["eval"])[0]
        if k == "fp32":
            ref = outs
        fid[k] = fidelity(ref, outs, labels)
    log(f"{name}: timing side by side")
    t = time_side_by_side(models, next(iter(case["eval"])), threads=1, budget_s=15.0, max_rounds=200)
    row = {"model": name, "key": case["key"], "median_ms": t.median_ms, "rounds": t.rounds,
           "speedup": {k: t.ratio("fp32", k) for k in models}, "fidelity": fid, "edgecompress_exit": ec_exit,
           "edgecompress_seconds": round(ec_seconds, 1), "ort_error": ort_error}
    if ec_report:
        row["edgecompress_choice"] = {k: ec_report.get(k) for k in ("mode", "format", "activation_type",
                                                                     "per_channel", "reduce_range", "calibrator")}
        row["edgecompress_census"] = {k: ec_report.get("census", {}).get(k) for k in ("int8", "float", "total")}
        row["edgecompress_speed_in_report"] = ec_report.get("speed")
        row["edgecompress_fidelity_in_report"] = ec_report.get("fidelity")
        row["excluded_nodes"] = ec_report.get("excluded_nodes")
    return row


# -------------------------------------------------------------------------------------------- RSS probe
def rss_probe(method: str, n: int) -> None:
    """Calibrate the MNIST CNN on `n` samples in this (fresh) process; print peak RSS in MB as JSON."""
    from edgecompress.quantize.calibration import calibrate

    def hwm_mb() -> float:  # VmHWM: this process's peak RSS (ru_maxrss would include the parent's, via fork)
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024

    src = Path(os.environ["EC_RSS_MODEL"])
    z = np.load(DATA / "mnist_train.npz")
    data = FeedData.from_arrays({"input": z["input"][:n]})
    with private_tempdir() as tmp, working_directory(tmp):
        before = hwm_mb()
        calibrate(src, data, method, tmp)
        peak = hwm_mb()
    print(json.dumps({"method": method, "samples": n, "peak_rss_mb": peak, "before_mb": before}))


def rss_compare(work: Path) -> dict:
    import torch

    from examples import mnist_models

    torch.manual_seed(0)
    model = export(mnist_models.MnistResNet(width=16), torch.randn(1, 1, 28, 28), work / "rss_cnn.onnx", "input")
    out = {}
    for method in ("histogram", "entropy"):
        for n in (32, 512):
            log(f"rss probe {method} {n}")
            env = dict(os.environ, EC_RSS_MODEL=str(model))
            r = subprocess.run([sys.executable, __file__, "--rss-probe", method, str(n)], capture_output=True,
                               text=True, env=env, cwd=str(work), check=True)
            out[f"{method}_{n}"] = json.loads(r.stdout.strip().splitlines()[-1])
    for method in ("histogram", "entropy"):
        out[f"{method}_ratio_512_vs_32"] = out[f"{method}_512"]["peak_rss_mb"] / out[f"{method}_32"]["peak_rss_mb"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated keys: resnet18, mobilenetv2, bert, mnist_cnn, "
                                               "mnist_depthwise, mnist_transformer, rss")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--rss-probe", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_probe:
        rss_probe(args.rss_probe[0], int(args.rss_probe[1]))
        return
    only = {s for s in args.only.split(",") if s}
    results: dict = {"rows": [], "load_average": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with private_tempdir("ec-bench-") as work:
        rows = []
        for case in build_zoo(work, only - {"rss"}):
            rows.append(run_case(case, work))
            _print_row(rows[-1])
        results["rows"] = rows
        if not only or "rss" in only:
            results["rss"] = rss_compare(work)
    results["load_average_end"] = os.getloadavg()
    _print_summary(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))


def _print_row(r: dict) -> None:
    sp, fd = r["speedup"], r["fidelity"]

    def f(k: str) -> str:
        if k not in sp:
            if k == "ort":
                return f"ort: failed ({r['ort_error']})"
            return f"{k}: not written (exit {r['edgecompress_exit']})"
        q = fd[k]
        acc = f" acc {q['accuracy']:.4f}" if "accuracy" in q else ""
        return f"{k}: {sp[k]:.2f}x ({r['median_ms'][k]:.2f} ms) cos {q['cosine']:.4f} top1-agree {q['top1_agreement']:.3f}{acc}"

    print(f"\n{r['model']}  [{r['rounds']} interleaved rounds, 1 thread]")
    for k in ("fp32", "ort", "edgecompress"):
        print("   ", f(k))
    if r.get("edgecompress_choice"):
        print("    edgecompress chose:", r["edgecompress_choice"], "census:", r["edgecompress_census"])
    sys.stdout.flush()


def _print_summary(res: dict) -> None:
    print("\n=== acceptance ===")
    for r in res["rows"]:
        key = r["key"]
        if key in ACCEPT:
            got = r["speedup"].get("edgecompress")
            ok = got is not None and got >= ACCEPT[key]
            print(f"{key}: edgecompress {got if got is None else round(got, 2)}x vs fp32 (need >= {ACCEPT[key]}): "
                  f"{'PASS' if ok else 'FAIL'}")
        else:
            fd = r["fidelity"]
            src = fd.get("edgecompress") or {}
            acc = src.get("accuracy")
            if acc is None and r.get("edgecompress_fidelity_in_report"):
                acc = r["edgecompress_fidelity_in_report"]["int8"]
            ratio = acc / fd["fp32"]["accuracy"] if acc is not None else None
            print(f"{key}: int8 accuracy {acc} vs fp32 {fd['fp32']['accuracy']:.4f} -> "
                  f"{'n/a' if ratio is None else f'{ratio:.4f}'} of fp32 (need >= 0.99): "
                  f"{'PASS' if ratio is not None and ratio >= 0.99 else 'FAIL'}")
    if "rss" in res:
        r = res["rss"]
        print(f"histogram calibration peak RSS 512 vs 32 samples: edgecompress streaming "
              f"{r['histogram_ratio_512_vs_32']:.3f}x ({r['histogram_32']['peak_rss_mb']:.0f} -> "
              f"{r['histogram_512']['peak_rss_mb']:.0f} MB; need <= 1.2): "
              f"{'PASS' if r['histogram_ratio_512_vs_32'] <= 1.2 else 'FAIL'}; ORT entropy (histogram) calibrator "
              f"{r['entropy_ratio_512_vs_32']:.3f}x ({r['entropy_32']['peak_rss_mb']:.0f} -> "
              f"{r['entropy_512']['peak_rss_mb']:.0f} MB)")
    print(f"load average at start {res['load_average']}, at end {res['load_average_end']} (2 cores, shared)")


if __name__ == "__main__":
    main()
