#!/usr/bin/env python
"""The zoo's real pretrained models: fp32 vs ONNX Runtime's own quantizers vs edgecompress quantize / prune, one
table per model, every variant timed side by side in one interleaved loop (1 thread, batch 1) and compared with
fp32 on the zoo's score split through edgecompress.fidelity.

Per zoo model (bench/zoo/prepare.py builds the zoo; `make bench-real` runs it first):
  fp32                     the zoo's model
  ORT static defaults      quant_pre_process, then quantize_static over the calibration split with ORT's defaults
                           (QDQ, S8S8, per-tensor, MinMax)
  ORT static U8S8 pc       the same with activation_type=QUInt8, weight_type=QInt8, per_channel=True
  ORT dynamic pc / pt      transformers only (kind embedding, or MatMul/Gemm without Conv): quantize_dynamic
  ec quantize              `edgecompress quantize MODEL --calibration C --eval T --out Q --json` (+ compare hints)
  ec prune F [+ quantize]  `edgecompress prune MODEL --target-macs F ...` for F = 0.9, 0.7, 0.5 (upper bounds under
                           the default --max-drop 0.02), and with no F (the budget search); then quantize each

Columns: exit code and wall time of each call, size, p50 latency, speed-up vs fp32 and vs the fastest ORT variant
(medians of per-round ratios), and every fidelity headline of edgecompress.fidelity.compare_models vs fp32.

    .venv/bin/python bench/real_models.py [--only NAME ...] [--skip NAME ...] [--fast] [--zoo CACHE]
        [--out bench/results/real_models.md] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.realbench import report, zoo_io  # noqa: E402
from bench.realbench.variants import (  # noqa: E402
    Variant,
    one_line,
    ort_dynamic,
    ort_static,
    prune_note,
    quant_note,
    run_cli,
)

PRUNE_TARGETS = (0.9, 0.7, 0.5, None)  # None: no reduction asked, the default budget (--max-drop 0.02) searches
T0 = time.perf_counter()


def log(msg: str) -> None:
    el = time.perf_counter() - T0
    print(f"[{time.strftime('%H:%M:%S')} +{el / 60:5.1f} min] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this zoo model (repeatable, or comma-separated)")
    ap.add_argument("--skip", action="append", default=[], metavar="NAME", help="skip this zoo model (repeatable)")
    ap.add_argument("--fast", action="store_true",
                    help="a quick look: 32 calibration / eval / score samples, fewer timing rounds; writes "
                         "real_models.fast.md unless --out is given")
    ap.add_argument("--zoo", default=None, help="zoo cache (default $EDGECOMPRESS_ZOO or ~/.cache/edgecompress/zoo)")
    ap.add_argument("--out", type=Path, default=None, help="results markdown (a .json is written beside it)")
    ap.add_argument("--keep", type=Path, default=None, help="keep every produced model under this folder")
    ap.add_argument("--update", action="store_true",
                    help="replace only the sections of the models run (with --only) in an existing --out; the "
                         "others are kept from the earlier run, and the header says which were re-run when")
    ap.add_argument("--score-samples", type=int, default=0, help="cap the scored samples (0: all; --fast: 32)")
    ap.add_argument("--cli-timeout", type=float, default=1800.0, help="seconds per edgecompress call")
    ap.add_argument("--timing-budget", type=float, default=0.0,
                    help="seconds of timing rounds per zoo model (default 40, --fast 6)")
    args = ap.parse_args(argv)
    args.only = [n for a in args.only for n in a.split(",") if n]
    args.skip = [n for a in args.skip for n in a.split(",") if n]
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("real_models.fast.md" if args.fast else "real_models.md")
    if args.fast and not args.score_samples:
        args.score_samples = 32
    if not args.timing_budget:
        args.timing_budget = 6.0 if args.fast else 40.0
    return args


def timing_rounds(fast: bool) -> dict[str, int]:
    return {"min_rounds": 5, "max_rounds": 40} if fast else {"min_rounds": 30, "max_rounds": 400}


# ------------------------------------------------------------------------------------------------ variants
def make_variants(zm: Any, work: Path, data: dict[str, Path], flags: list[str], args: argparse.Namespace,
                  info: dict[str, Any]) -> list[Variant]:
    from onnxruntime.quantization import QuantType

    from edgecompress.data import load_data

    variants = [Variant("fp32", "fp32", "fp32", path=zm.path)]
    cal = load_data(data["calibration"], what="calibration data")
    log(f"  ORT quantize_static defaults ({len(cal)} calibration samples)")
    variants.append(ort_static("ort_static_default", "ORT static defaults (S8S8 per-tensor)", zm.path,
                               work / "ort_static_default.onnx", cal))
    log("  ORT quantize_static U8S8 per-channel")
    variants.append(ort_static("ort_static_u8s8_pc", "ORT static U8S8 per-channel", zm.path,
                               work / "ort_static_u8s8_pc.onnx", cal, activation_type=QuantType.QUInt8,
                               weight_type=QuantType.QInt8, per_channel=True))
    transformer, why = zoo_io.is_transformer(zm.kind, zm.path)
    if transformer:
        info["notes"].append(f"transformer ({why}): ORT quantize_dynamic variants added")
        for pc in (True, False):
            tag = "pc" if pc else "pt"
            log(f"  ORT quantize_dynamic per_channel={pc}")
            variants.append(ort_dynamic(f"ort_dynamic_{tag}", f"ORT dynamic {'per-channel' if pc else 'per-tensor'}",
                                        zm.path, work / f"ort_dynamic_{tag}.onnx", per_channel=pc))
    for v in variants[1:]:
        if v.error:
            log(f"    {v.name} raised: {v.error}")

    common = ["--calibration", str(data["calibration"]), "--eval", str(data["eval"]), *flags]

    def cli(name: str, label: str, args_: list[str], out: Path) -> Variant:
        log(f"  edgecompress {' '.join(args_[:2])} ... -> {out.name}")
        v = run_cli(name, label, args_, out, timeout_s=args.cli_timeout, log=log, cwd=work)
        log(f"    exit {v.exit} in {v.wall_s:.1f} s" + (f": {v.error}" if v.error else ""))
        return v

    q = cli("ec_quantize", "ec quantize", ["quantize", str(zm.path), *common], work / "ec_quantize.onnx")
    q.note = quant_note(q.report)
    variants.append(q)
    pruned: list[Variant] = []
    for f in PRUNE_TARGETS:
        tag = f"{round(f * 100)}" if f is not None else "search"
        asked = ["--target-macs", f"{f:g}"] if f is not None else []
        label = f"ec prune {f:g} MACs" if f is not None else "ec prune (search, max-drop 0.02)"
        p = cli(f"ec_prune{tag}", label, ["prune", str(zm.path), *asked, *common], work / f"ec_prune{tag}.onnx")
        p.note = prune_note(p.report)
        pruned.append(p)
    for f, p in zip(PRUNE_TARGETS, list(pruned), strict=True):
        tag = f"{round(f * 100)}" if f is not None else "search"
        name, label = f"ec_prune{tag}_quantize", f"ec prune {f:g} + quantize" if f is not None else \
            "ec prune (search) + quantize"
        if not p.ok:
            pq = Variant(name, label, "edgecompress", error=f"not run: prune exit {p.exit}")
        else:
            pq = cli(name, label, ["quantize", str(p.path), *common], work / f"{name}.onnx")
            pq.note = quant_note(pq.report)
        pruned.append(pq)
    # table order: prune F, prune F + quantize, ...
    n = len(PRUNE_TARGETS)
    for i in range(n):
        variants += [pruned[i], pruned[n + i]]
    return variants


# ------------------------------------------------------------------------------------------------ timing
def time_all(variants: list[Variant], feed: dict[str, Any], args: argparse.Namespace, info: dict[str, Any]) -> None:
    from edgecompress.onnxgraph.runtime import make_session
    from edgecompress.onnxgraph.timing import time_side_by_side

    runnable: dict[str, Path] = {}
    for v in variants:
        if not v.ok:
            continue
        try:
            make_session(str(v.path), threads=1, origin=v.name).run(None, feed)
            runnable[v.name] = v.path
        except Exception as exc:  # noqa: BLE001 - a model ORT cannot load or run is a result of its row
            v.error = f"ORT cannot run it: {one_line(exc)}"
            log(f"    {v.name}: {v.error}")
    if "fp32" not in runnable:
        info["notes"].append("fp32 does not run on the timing feed: no timing")
        return
    kw = timing_rounds(args.fast)
    log(f"  timing {len(runnable)} models interleaved (1 thread, budget {args.timing_budget:.0f} s)")
    t = time_side_by_side(runnable, feed, threads=1, budget_s=args.timing_budget, **kw)
    ort_names = [v.name for v in variants if v.tool == "ort" and v.name in runnable]
    best = min(ort_names, key=lambda k: t.median_ms[k]) if ort_names else None
    info["ort_best"] = best
    info["timing_rounds"] = t.rounds
    for v in variants:
        if v.name not in runnable:
            continue
        v.timing = {"p50_ms": t.median_ms[v.name], "x_fp32": t.ratio("fp32", v.name),
                    "x_ort_best": t.ratio(best, v.name) if best else None, "rounds": t.rounds}
    log(f"    {t.rounds} rounds; " + ", ".join(f"{k} {t.median_ms[k]:.2f} ms" for k in runnable))


# ------------------------------------------------------------------------------------------------ fidelity
def score_all(variants: list[Variant], zm: Any, score: Any, cfg: Any, info: dict[str, Any]) -> None:
    from edgecompress.fidelity import compare_models, resolve_state, run_outputs

    t0 = time.perf_counter()
    try:
        state = resolve_state(cfg, str(zm.path))
        ref = run_outputs(str(zm.path), score, state=state, origin="fp32")
    except Exception as exc:  # noqa: BLE001 - no reference, no fidelity: said in the section
        info["notes"].append(f"fp32 on the score split failed: {one_line(exc)}")
        return
    if state:
        info["notes"].append("closed loop: " + ", ".join(f"{a} <- {b}" for a, b in state))
    fp32 = next(v for v in variants if v.tool == "fp32")
    fp32.fidelity = {"headline": _labels_only(score, ref)}
    for v in variants:
        if v.tool == "fp32" or not v.ok:
            continue
        log(f"  fidelity {v.name} on {len(score)} score samples")
        try:
            rep = compare_models(str(zm.path), str(v.path), score, cfg, reference_outputs=ref)
            v.fidelity = rep.to_dict()
            v.fidelity["summary"] = rep.summary()
        except Exception as exc:  # noqa: BLE001 - a comparison that fails is a result of its row
            v.error = f"fidelity: {one_line(exc)}"
            log(f"    {v.error}")
    info["fidelity_seconds"] = round(time.perf_counter() - t0, 1)


def _labels_only(score: Any, ref: dict[str, Any]) -> dict[str, float]:
    """fp32's own accuracy against the score labels, where an output holds class scores for them."""
    from edgecompress.fidelity import label_accuracy

    acc = label_accuracy(ref, getattr(score, "labels", None))
    return {} if acc is None else {"accuracy": acc, "accuracy_reference": acc}


# ------------------------------------------------------------------------------------------------ one model
def run_model(name: str, zm: Any, scratch: Path, args: argparse.Namespace) -> tuple[dict[str, Any], list[Variant]]:
    from edgecompress.data import FeedData, load_data

    t0 = time.perf_counter()
    work = scratch / name
    work.mkdir(parents=True)
    info: dict[str, Any] = {"kind": zm.kind, "model": str(zm.path), "notes": []}
    cfg, flags, hint_notes = zoo_io.compare_settings(zm.compare)
    info["compare"] = " ".join(shlex.quote(f) for f in flags) or "none (auto)"
    info["notes"] += hint_notes
    data = {s: Path(zm.data[s]) for s in ("calibration", "eval", "score")}
    stateful = bool(cfg.state)  # the zoo's state hint, as --state
    if args.fast and stateful:
        info["notes"].append("--fast keeps every split whole: the head of a closed-loop stream is not "
                             "representative (it can be all silence)")
    elif args.fast:
        for s in ("calibration", "eval"):
            data[s] = zoo_io.subset(data[s], work / f"{s}.fast{'' if data[s].is_dir() else '.npz'}", 32)
    score = load_data(data["score"], what="score data")
    if args.score_samples and len(score) > args.score_samples and not (args.fast and stateful):
        score = score.head(args.score_samples)
    feeds = score.feeds()  # read once: every variant is scored on the same arrays
    score = FeedData.from_feeds(feeds, labels=score.labels, source=str(data["score"]))
    info["score"] = f"{data['score']} ({len(score)} samples" + (", labels" if score.labels is not None else "") + ")"
    feed, how = zoo_io.timing_feed(feeds[:64])
    info["timing"] = f"{how}; intra_op 1, inter_op 1, ORT_ENABLE_ALL"
    variants = make_variants(zm, work, data, flags, args, info)
    time_all(variants, feed, args, info)
    score_all(variants, zm, score, cfg, info)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return info, variants


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    command = ".venv/bin/python bench/real_models.py" + (" " + shlex.join(argv) if argv else "")
    try:
        zoo = zoo_io.load_zoo(args.zoo)
    except Exception as exc:  # noqa: BLE001 - ZooError and friends: one line and exit 2
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    unknown = [n for n in args.only + args.skip if n not in zoo]
    if unknown:
        print(f"error: not in the zoo: {', '.join(unknown)} (zoo: {', '.join(zoo)})", file=sys.stderr)
        return 2
    names = [n for n in zoo if (not args.only or n in args.only) and n not in args.skip]
    machine = report.machine_facts(ROOT)
    log(f"zoo: {', '.join(names)}; {machine['cpu']}, avx512_vnni={machine['avx512_vnni']}, "
        f"onnxruntime {machine['onnxruntime']}")
    scratch = Path(tempfile.mkdtemp(prefix="real-models-"))
    sections: dict[str, str] = {}
    results: dict[str, Any] = {}
    meta: dict[str, Any] = {"command": command, "machine": machine, "fast": args.fast,
                            "started": started.strftime("%Y-%m-%d %H:%M"),
                            "timing_desc": "all variants of a zoo model in one interleaved loop "
                                           "(edgecompress.onnxgraph.timing.time_side_by_side), "
                                           f"{timing_rounds(args.fast)['min_rounds']}+ rounds / "
                                           f"{args.timing_budget:.0f} s, p50 = median, ratios = medians of "
                                           "per-round ratios"}
    if args.update:
        sections, results, earlier = _earlier(args.out)
        meta["earlier"] = earlier
        meta["rerun"] = f"{', '.join(names)} re-run {started.strftime('%Y-%m-%d %H:%M')} UTC (git {machine['git']})"
    try:
        for i, name in enumerate(names, 1):
            log(f"[{i}/{len(names)}] {name}")
            try:
                info, variants = run_model(name, zoo[name], scratch, args)
            except Exception as exc:  # noqa: BLE001 - one zoo model failing does not stop the others
                log(f"  {name} failed: {one_line(exc)}")
                info, variants = {"notes": [f"bench failed: {one_line(exc)}"]}, []
            sec = report.model_section(name, info, variants)
            print(sec, flush=True)
            sections[name] = sec
            results[name] = {**info, "section": sec, "variants": [v.to_dict() for v in variants]}
            if args.keep:
                dest = args.keep / name
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(scratch / name, dest)
            _write(args, meta, sections, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = _write(args, meta, sections, results)
    log(f"done in {(time.perf_counter() - T0) / 60:.1f} min; wrote {path} and {path.with_suffix('.json')}")
    return 0


def _earlier(out: Path) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """Sections, per-model results and the header facts of an earlier run's results (for --update)."""
    import json

    js = out.with_suffix(".json")
    if not js.is_file():
        raise SystemExit(f"error: --update needs an earlier {js}")
    obj = json.loads(js.read_text())
    md = out.read_text() if out.is_file() else ""
    parsed = {chunk.split("\n", 1)[0].strip(): "## " + chunk.rstrip() + "\n" for chunk in md.split("\n## ")[1:]}
    models = obj.get("models", {})
    sections = {n: r.get("section") or parsed.get(n, f"## {n}\n") for n, r in models.items()}
    base = obj.get("earlier") or {k: obj.get(k) for k in ("command", "started", "finished", "wall_min")}
    base = {**base, "git": base.get("git") or (obj.get("machine") or {}).get("git"),
            "reruns": list(base.get("reruns") or []) + ([obj["rerun"]] if obj.get("earlier") and obj.get("rerun") else [])}
    return sections, models, base


def _write(args: argparse.Namespace, meta: dict[str, Any], sections: dict[str, str], results: dict[str, Any]) -> Path:
    meta = {**meta, "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "wall_min": (time.perf_counter() - T0) / 60, "loadavg_end": list(os.getloadavg())}
    order = list(zoo_io.load_zoo(args.zoo)) if args.update else list(sections)
    ordered = [sections[n] for n in order if n in sections] + [s for n, s in sections.items() if n not in order]
    report.write_results(args.out, report.document(meta, ordered), {**meta, "models": results})
    return args.out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
