#!/usr/bin/env python
"""Weight-only int4 on real models: fp32 vs ONNX Runtime's own int4 quantizer vs `edgecompress quantize --weights
int4`, sizes, fidelity and speed measured side by side in one interleaved run (1 thread, batch 1).

1. The small decoder (examples/text_models.py, trained by scripts/train_text_decoder.py on CPython's standard
   library source; ONNX with a KV cache): perplexity per byte on held-out files (pytext_eval.npz, disjoint from
   calibration), file size and MatMul weight bytes vs fp32, and per-token latency of a one-token decode step with
   a 127-token cache (the feed int4 is meant for).
2. The zoo MiniLM sentence encoder: mean cosine of the embeddings vs fp32 on the zoo's score split (disjoint from
   calibration and eval), size vs fp32.

Variants: `ORT rtn` = MatMulNBitsQuantizer (block 32, asymmetric, accuracy_level 4: ORT's RTN, MatMul only);
`ec rtn` = edgecompress with --algorithm rtn --block-size 32; `ec` = edgecompress's defaults (for the decoder with
--block-size 32, the acceptance's format, and --max-drop as given).

    .venv/bin/python bench/lowbit.py [--decoder DIR] [--zoo CACHE] [--skip decoder|minilm] [--out bench/results/lowbit.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLI = ROOT / ".venv" / "bin" / "edgecompress"
DECODER = Path.home() / ".cache" / "edgecompress" / "text_decoder"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quantize_cli(model: Path, out: Path, args: list[str], cwd: Path) -> dict[str, Any]:
    cmd = [str(CLI), "quantize", str(model), "--weights", "int4", *args, "--out", str(out), "--json"]
    log(" ".join(cmd[1:]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"quantize failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    rep = json.loads(proc.stdout)["report"]
    rep["wall_s"] = round(wall, 1)
    return rep


def ort_rtn(model: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(model)), bits=4, block_size=32, is_symmetric=False, accuracy_level=4)
    q.process()
    onnx.save(q.model.model, str(out))


def feeds(npz: Path) -> list[dict[str, np.ndarray]]:
    from edgecompress.data import load_data

    return list(load_data(npz))


def perplexity(model: Path, data: list[dict[str, np.ndarray]]) -> tuple[float, np.ndarray]:
    """Perplexity per byte (logits[t] predicts input_ids[t + 1]) and the predicted next byte at every position."""
    from edgecompress.onnxgraph.runtime import make_session

    s = make_session(str(model), threads=1, origin=model.name)
    nll, n = 0.0, 0
    preds = []
    for f in data:
        logits = s.run(["logits"], f)[0][0].astype(np.float64)  # [S, 256]
        preds.append(logits.argmax(-1))
        ids = f["input_ids"][0]
        z = logits[:-1] - logits[:-1].max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        n += len(ids) - 1
    return float(np.exp(nll / n)), np.concatenate(preds)


def decode_feed(model: Path, prompt: dict[str, np.ndarray], past_len: int) -> dict[str, np.ndarray]:
    """input_ids [1, 1] and the fp32 model's own cache of the first `past_len` prompt tokens."""
    from edgecompress.onnxgraph.runtime import make_session

    s = make_session(str(model), threads=1, origin=model.name)
    ids = prompt["input_ids"][:, :past_len]
    present = s.run(["present"], {"input_ids": ids, "past": prompt["past"]})[0]
    return {"input_ids": prompt["input_ids"][:, past_len:past_len + 1], "past": present}


def matmul_weight_bytes(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    total = 0
    for n in m.graph.node:
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits:
            total += numpy_helper.to_array(inits[n.input[1]]).nbytes
        elif n.op_type == "MatMulNBits":
            total += sum(numpy_helper.to_array(inits[i]).nbytes for i in n.input[1:4] if i in inits)
    return total


def bench_decoder(d: Path, work: Path, max_drop: str) -> dict[str, Any]:
    from edgecompress.onnxgraph.timing import time_side_by_side

    model, cal, ev = d / "decoder.onnx", d / "pytext_calibration.npz", d / "pytext_eval.npz"
    data = feeds(ev)
    speed = work / "decode_step.npz"
    step = decode_feed(model, data[0], 127)
    np.savez(speed, **step)
    variants: dict[str, Path] = {"fp32": model}
    reports: dict[str, Any] = {}
    ort_rtn(model, work / "ort_rtn.onnx")
    variants["ORT rtn"] = work / "ort_rtn.onnx"
    common = ["--calibration", str(cal), "--eval", str(ev), "--speed-data", str(speed), "--block-size", "32",
              "--max-drop", max_drop, "--allow-slower"]
    for name, extra in (("ec rtn", ["--algorithm", "rtn"]), ("ec", [])):
        out = work / f"{name.replace(' ', '_')}.onnx"
        reports[name] = quantize_cli(model, out, common + extra, work)
        variants[name] = out
    log("timing the decode step side by side")
    t = time_side_by_side(variants, step, threads=1, min_rounds=30, budget_s=20)
    rows = {}
    fp32_bytes, fp32_w = model.stat().st_size, matmul_weight_bytes(model)
    from edgecompress.fidelity import compare_models

    ref_pred = np.zeros(0)
    for name, path in variants.items():
        log(f"perplexity and logit fidelity of {name}")
        fid = compare_models(model, path, ev).output("logits")
        ppl, pred = perplexity(path, data)
        if name == "fp32":
            ref_pred = pred  # variants dict: fp32 first
        rows[name] = {"next_byte_agreement": round(float((pred == ref_pred).mean()), 4),
                      "logits_cosine": round(fid.metrics.get("cosine", float("nan")), 5),
                      "size_mb": round(path.stat().st_size / 2 ** 20, 3),
                      "size_vs_fp32": round(path.stat().st_size / fp32_bytes, 4),
                      "matmul_weights_vs_fp32": round(matmul_weight_bytes(path) / fp32_w, 4),
                      "ppl": round(ppl, 4),
                      "token_ms": round(t.median_ms[name], 3),
                      "speedup": round(t.ratio("fp32", name), 3)}
    for name in rows:
        rows[name]["ppl_vs_fp32"] = round(rows[name]["ppl"] / rows["fp32"]["ppl"] - 1, 4)
    return {"rows": rows, "reports": {k: _brief(v) for k, v in reports.items()}, "rounds": t.rounds,
            "eval_windows": len(data), "tokens": int(sum(f["input_ids"].size - 1 for f in data))}


def bench_minilm(zoo: Path, work: Path) -> dict[str, Any]:
    from bench.zoo.prepare import load_zoo
    from edgecompress.fidelity import compare_models
    from edgecompress.onnxgraph.timing import time_side_by_side

    zm = load_zoo(zoo)["minilm_l3"]
    model = Path(zm.path)
    variants: dict[str, Path] = {"fp32": model}
    ort_rtn(model, work / "minilm_ort_rtn.onnx")
    variants["ORT rtn"] = work / "minilm_ort_rtn.onnx"
    reports = {}
    common = ["--calibration", str(zm.calibration), "--eval", str(zm.eval), "--allow-slower"]
    for name, extra in (("ec rtn", ["--algorithm", "rtn", "--block-size", "32", "--max-drop", "0.5"]), ("ec", [])):
        out = work / f"minilm_{name.replace(' ', '_')}.onnx"
        reports[name] = quantize_cli(model, out, common + extra, work)
        variants[name] = out
    feed = next(iter(feeds(Path(zm.score))))
    t = time_side_by_side(variants, feed, threads=1, min_rounds=30, budget_s=15)
    rows = {}
    for name, path in variants.items():
        fid = compare_models(model, path, zm.score)
        rows[name] = {"size_mb": round(path.stat().st_size / 2 ** 20, 3),
                      "size_vs_fp32": round(path.stat().st_size / model.stat().st_size, 4),
                      "cosine": round(fid.cosine, 5), "worst_drop": round(fid.drop, 5),
                      "ms": round(t.median_ms[name], 3), "speedup": round(t.ratio("fp32", name), 3)}
    return {"rows": rows, "reports": {k: _brief(v) for k, v in reports.items()}, "score_samples": fid.samples}


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("algorithm", "algorithm_reason", "block_size", "symmetric", "activations", "layers", "embeddings",
            "weight_bytes", "layer_error", "speed", "size_mb", "notes", "wall_s", "calibration")
    out = {k: r.get(k) for k in keys}
    out["layers"] = {k: v for k, v in (r.get("layers") or {}).items() if k != "kept_float"}
    return out


def cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} cores, {'avx512_vnni' if 'avx512_vnni' in flags else 'no avx512_vnni'}"


def table(rows: dict[str, dict[str, Any]], cols: list[str]) -> str:
    head = "| variant | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    return head + "".join(f"| {n} | " + " | ".join(str(r.get(c, "-")) for c in cols) + " |\n" for n, r in rows.items())


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decoder", type=Path, default=DECODER)
    ap.add_argument("--zoo", type=Path, default=None)
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--max-drop", default="0.05", help="--max-drop for the decoder's ec variant (top-1 agreement "
                                                       "of next-byte predictions)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lowbit.md")
    args = ap.parse_args(argv)
    res: dict[str, Any] = {"cpu": cpu(), "onnxruntime": __import__("onnxruntime").__version__,
                           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="ec-lowbit-") as tmp:
        work = Path(tmp)
        if "decoder" not in args.skip:
            res["decoder"] = bench_decoder(args.decoder, work, args.max_drop)
        if "minilm" not in args.skip:
            res["minilm"] = bench_minilm(args.zoo or Path(os.environ.get("EDGECOMPRESS_ZOO", Path.home() / ".cache"
                                                                           / "edgecompress" / "zoo")), work)
    md = [f"# Weight-only int4 on real models\n\n`.venv/bin/python bench/lowbit.py` on {res['date']}; CPU: "
          f"{res['cpu']}; onnxruntime {res['onnxruntime']}; 1 thread, batch 1; latencies are medians of one "
          "interleaved run, speed-ups medians of per-round ratios.\n"]
    if "decoder" in res:
        d = res["decoder"]
        md.append(f"\n## Decoder (examples/text_models.py:decoder), {d['eval_windows']} held-out windows, "
                  f"{d['tokens']} predicted bytes; per-token latency = one decode step with a 127-token cache\n\n")
        md.append(table(d["rows"], ["size_mb", "size_vs_fp32", "matmul_weights_vs_fp32", "ppl", "ppl_vs_fp32",
                                    "next_byte_agreement", "logits_cosine", "token_ms", "speedup"]))
    if "minilm" in res:
        d = res["minilm"]
        md.append(f"\n## MiniLM-L3 sentence encoder (zoo), cosine vs fp32 on {d['score_samples']} score sentences\n\n")
        md.append(table(d["rows"], ["size_mb", "size_vs_fp32", "cosine", "worst_drop", "ms", "speedup"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(md))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    print("".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
