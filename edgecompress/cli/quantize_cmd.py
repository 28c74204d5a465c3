"""`edgecompress quantize`: int8 quantization with calibration (thin wiring over edgecompress.quantize)."""

from __future__ import annotations

import click

from ..quantize.config import ACTIVATION_TYPES, BLOCK_SIZES, FORMATS, METHODS, MODES, PRECISIONS, WEIGHTS
from ..quantize.config import ALGORITHMS as LOW_BIT_ALGORITHMS
from .common import compare_options, console, handle_errors, json_option, kv_table, show_result, target_option


@click.command("quantize", context_settings={"max_content_width": 110})
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--calibration", required=True, metavar="DATA",
              help="Calibration data: .npz (keys = input names, samples on axis 0), a folder of .npz, images, or "
                   "module:function. A quarter is held out to check fidelity when --eval is not given.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), metavar="OUT.onnx",
              help="Where to write the int8 model (written atomically; must differ from MODEL).")
@target_option
@click.option("--eval", "eval_data", default=None, metavar="DATA",
              help="Evaluation data (same formats; optional 'labels'): int8 is compared with fp32 on it.")
@compare_options
@click.option("--max-drop", type=float, default=0.01, show_default=True, metavar="X",
              help="Largest drop accepted on the worst output (0.01 = 1 %: 1 % of top-1 decisions flipped, or 1 - "
                   "balanced cosine); beyond it the most sensitive nodes fall back to fp32 one by one.")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
              help="auto: static, and for MatMul-dominated graphs also dynamic; the fastest within --max-drop "
                   "wins (fidelity at equal speed).")
@click.option("--method", type=click.Choice(METHODS),
              default="auto", show_default=True,
              help="Calibration: minmax; percentile / entropy (ORT's, memory grows with samples); histogram "
                   "(streaming, bounded memory, MSE-optimal clipping). auto: best fidelity of minmax/histogram.")
@click.option("--per-channel/--per-tensor", "per_channel", default=None,
              help="Per-channel or per-tensor weight scales. Default: the target's preference.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto",
              show_default=True,
              help="Graph format. auto: the target's preference; on this machine, QDQ and QOperator are timed.")
@click.option("--activation-type", type=click.Choice(ACTIVATION_TYPES), default="auto",
              show_default=True,
              help="Activation type. auto: the target's preference; on this machine uint8 and int8 are timed "
                   "side by side and the fastest within --max-drop is kept.")
@click.option("--exclude", multiple=True, metavar="NODE",
              help="Keep this node in fp32 (repeatable; node names after pre-processing).")
@click.option("--allow-slower", is_flag=True,
              help="Write the model even if it measures slower than fp32 on this machine (else exit 1).")
@click.option("--weights", type=click.Choice(WEIGHTS), default="int8", show_default=True,
              help="int8: weights and activations (the options above). int4: weight-only 4-bit MatMul/Gemm weights "
                   "and embedding tables (ONNX Runtime's MatMulNBits / GatherBlockQuantized) for transformers and "
                   "language models; activations float or int8 inside the kernel, whichever is faster here.")
@click.option("--block-size", type=click.Choice([str(b) for b in BLOCK_SIZES]), default=None,
              help="int4: weights per scale along K. Default: 32, 64 and 128 are tried, chosen by fidelity and speed.")
@click.option("--symmetric/--asymmetric", "symmetric", default=None,
              help="int4: symmetric blocks (no zero points) or asymmetric. Default: both tried.")
@click.option("--algorithm", type=click.Choice(LOW_BIT_ALGORITHMS), default="auto", show_default=True,
              help="int4 rounding: rtn (round to nearest), clip (activation-weighted clipping search), gptq "
                   "(GPTQ error feedback through each layer's input Hessian); auto: best held-out fidelity.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="int8", show_default=True,
              help="fp16: weights and compute in float16 (risky ops kept fp32), for targets whose profile lists "
                   "fp16 (ARMv8.2+); parity is checked under arm64 emulation when it is set up.")
@click.option("--speed-data", default=None, metavar="DATA",
              help="The feed speed is measured on (its first sample); default: the first --eval sample. For a "
                   "language model, a one-token decode step.")
@json_option
@handle_errors
def quantize_cmd(model, calibration, out, target, eval_data, metric, detection, state, max_drop, mode, method,
                 per_channel, fmt, activation_type, exclude, allow_slower, weights, block_size, symmetric, algorithm,
                 precision, speed_data, as_json):
    """Quantize MODEL.onnx to int8 with calibration data.

    \b
    Defaults give the best result: the target's format and types, timed side by side on this machine,
    the calibration method with the best fidelity, cross-layer equalization for depthwise nets,
    weight rounding and clipping chosen by each layer's output error,
    transformer fusions before quantizing, fp32 fallback of sensitive nodes to stay within --max-drop.
    Exit 1 if int8 is slower than fp32 here (unless --allow-slower) or the accuracy budget cannot be met.

    \b
    Example:
      edgecompress quantize model.onnx --calibration calib.npz --eval eval.npz --out model.int8.onnx
    """
    from ..quantize import QuantizeConfig, quantize

    cfg = QuantizeConfig(mode=mode, method=method, per_channel=per_channel, format=fmt,
                         activation_type=activation_type, metric=metric, detection=detection, state=tuple(state),
                         max_drop=max_drop, exclude=tuple(exclude), allow_slower=allow_slower, weights=weights,
                         block_size=int(block_size or 0), symmetric=symmetric, algorithm=algorithm,
                         precision=precision)
    result = quantize(model, cfg, out=out, calibration=calibration, eval_data=eval_data, target=target,
                      speed_data=speed_data)
    show_result(result, as_json, _print)


def _print(result) -> None:
    r = result.report
    if getattr(r, "mode", "") == "weight-only":
        return _print_weight_only(result)
    if getattr(r, "mode", "") == "fp16":
        return _print_fp16(result)
    t = kv_table(f"quantized -> {result.artifact.path}")
    t.add_row("mode", f"{r.mode} ({r.mode_reason})")
    t.add_row("format / types", f"{r.format}, activations {r.activation_type}, weights {r.weight_type}, "
                                f"{'per-channel' if r.per_channel else 'per-tensor'}"
                                f"{', reduce-range' if r.reduce_range else ''}")
    t.add_row("calibrator", f"{r.calibrator} ({r.calibrator_reason})")
    f = r.fidelity
    t.add_row("fidelity", f"worst output {f.get('output', '-')}: {f['metric']} vs {f['against']}: fp32 "
                          f"{f['fp32']:.4f}, int8 {f['int8']:.4f}, drop {f['drop']:.4f} (+- {f['ci95']:.3f}) on "
                          f"{r.fidelity_data}")
    for o in f["comparison"]["outputs"]:
        m = o["metrics"]
        extra = ", ".join(f"{k} {m[k]:.4g}" for k in ("top5_containment", "balanced_cosine", "sqnr_db",
                                                     "decision_agreement", "detection_recall") if k in m)
        t.add_row(f"  {o['name']}", f"{o['primary']}: drop {o['drop']:.4f}" + (f"; {extra}" if extra else ""))
    s = r.speed
    t.add_row("speed", f"{s['speedup']:.2f}x vs fp32 ({s['fp32_ms']:.2f} -> {s['int8_ms']:.2f} ms, "
                       f"{s['threads']} thread(s), side by side)" if s.get("measured") else s.get("note", "-"))
    c = r.census
    t.add_row("int8 census", f"{c['int8']}/{c['total']} Conv/MatMul/Gemm run int8 in ORT's optimized graph")
    if r.excluded_nodes:
        t.add_row("fp32 nodes", ", ".join(e["name"] for e in r.excluded_nodes))
    t.add_row("equalization", str(r.equalization.get("reason", "applied" if r.equalization.get("applied") else "-")))
    if r.rounding:
        t.add_row("rounding", str(r.rounding.get("reason", "-")))
    t.add_row("size", f"{r.size_mb['fp32']:.2f} MB -> {r.size_mb['int8']:.2f} MB")
    for fb in r.fallbacks:
        t.add_row("fallback", fb)
    for n in r.notes:
        t.add_row("note", n)
    console().print(t)


def _print_weight_only(result) -> None:
    r = result.report
    t = kv_table(f"weight-only {r.weights} -> {result.artifact.path}")
    t.add_row("weights", f"{r.weights} {r.algorithm}, block {r.block_size}, "
                         f"{'symmetric' if r.symmetric else 'asymmetric'} ({r.algorithm_reason})")
    t.add_row("activations", r.activations)
    ly = r.layers
    t.add_row("layers", f"{ly['int4']} int4, {ly['int8']} int8 fallback, {len(ly['kept_float'])} left float; "
                        f"{r.embeddings['int4']} embedding table(s) int4")
    le = r.layer_error
    t.add_row("layer error", f"mean relative output error {le['mean_rel_output_error']:.5f} "
                             f"(rtn: {le['mean_rel_output_error_rtn']:.5f}) on calibration data")
    wb = r.weight_bytes
    t.add_row("weight bytes", f"{wb['fp32'] / 2**20:.2f} MB -> {wb['quantized'] / 2**20:.2f} MB ({wb['ratio']:.3f}x)")
    f = r.fidelity
    t.add_row("fidelity", f"worst output {f.get('output', '-')}: {f['metric']} vs {f['against']}: fp32 "
                          f"{f['fp32']:.4f}, {r.weights} {f['int8']:.4f}, drop {f['drop']:.4f} on {r.fidelity_data}")
    s = r.speed
    t.add_row("speed", f"{s['speedup']:.2f}x vs fp32 ({s['fp32_ms']:.2f} -> {s['int4_ms']:.2f} ms, "
                       f"{s['threads']} thread(s), side by side)" if s.get("measured") else s.get("note", "-"))
    t.add_row("size", f"{r.size_mb['fp32']:.2f} MB -> {r.size_mb['int4']:.2f} MB")
    for n in r.notes:
        t.add_row("note", n)
    console().print(t)


def _print_fp16(result) -> None:
    r = result.report
    c = r.conversion
    t = kv_table(f"fp16 for {r.target} -> {result.artifact.path}")
    t.add_row("converted", f"{c['converted_nodes']} node(s) in fp16, {len(c['kept_nodes'])} kept in fp32")
    for reason, ops in c["kept_ops"].items():
        t.add_row(f"  kept ({reason})", ", ".join(f"{k} x{v}" for k, v in ops.items()))
    for p in c["parity"]:
        t.add_row(f"  {p['output']} ({p['where']})", f"max rel error {p['max_rel']:.2e}, max abs {p['max_abs']:.2e}, "
                                                   f"cosine {p['cosine']:.6f}")
    t.add_row("judged", f"worst max rel error {c['worst_rel']:.2e} on {c['judged_on']} (threshold {c['threshold']})")
    f = r.fidelity
    t.add_row("fidelity", f"worst output {f.get('output', '-')}: {f['metric']} drop {f['drop']:.4f} on "
                          f"{r.fidelity_data}")
    t.add_row("size", f"{r.size_mb['fp32']:.2f} MB -> {r.size_mb['fp16']:.2f} MB")
    t.add_row("speed", r.speed.get("note", "-"))
    for n in r.notes:
        t.add_row("note", n)
    console().print(t)
