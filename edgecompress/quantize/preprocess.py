"""Pre-passes before quantizing: refuse already-quantized models, fuse transformer blocks, quant_pre_process.

* Transformer graphs (LayerNormalization, a decomposed LayerNorm, or attention: Softmax between MatMuls) go
  through `onnxruntime.transformers.optimizer` first, so LayerNorm/GELU/attention are fused and a decomposed
  LayerNorm is never quantized op by op (a known cause of accuracy collapse).
* `onnxruntime.quantization.quant_pre_process` (ORT's basic optimizations: BatchNorm folded into Conv, constant
  folding; then shape inference) is tried with its defaults, then `auto_merge=True`, then
  `skip_symbolic_shape=True`; every fallback is reported, never silent.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..errors import ModelError, RuntimeFailure, UnsupportedError
from ..onnxgraph.census import all_nodes, consumers, op_histogram, quant_state
from ..onnxgraph.io import LARGE, data_file_name, model_bytes

PRE_PROCESS_ATTEMPTS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("default", {}),
    ("auto_merge", {"auto_merge": True}),
    ("skip_symbolic_shape", {"skip_symbolic_shape": True}),
)


@dataclass
class PreprocessResult:
    path: Path
    transformer_fusions: dict[str, int] = field(default_factory=dict)
    pre_process: str = ""  # which quant_pre_process attempt succeeded ("" = none)
    batchnorm_folded: int = 0
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: onnx.ModelProto | None = field(default=None, repr=False, compare=False)  # the model at `path`, loaded


LOW_BIT_OPS = ("MatMulNBits", "GatherBlockQuantized", "MatMulBnb4", "MatMulFpQ4")


def check_not_quantized(model: onnx.ModelProto, origin: str) -> None:
    low = sorted({n.op_type for n in all_nodes(model.graph) if n.op_type in LOW_BIT_OPS})
    if low:
        raise ModelError(f"model {origin} is already quantized (block-quantized weights: {', '.join(low)}); "
                         "quantize the float model instead", hint="pass the fp32 model that was exported or pruned")
    state = quant_state(model)
    if state != "none":
        ops = [op for op in op_histogram(model) if any(k in op for k in ("Quantize", "QLinear", "Integer", "QGemm",
                                                                         "QAttention"))]
        raise ModelError(f"model {origin} is already quantized ({state}: {', '.join(ops[:4])}); "
                         "quantize the float model instead", hint="pass the fp32 model that was exported or pruned")


COMPUTE = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def check_has_compute(model: onnx.ModelProto, origin: str) -> None:
    """int8 only changes Conv/MatMul/Gemm of the main graph (ONNX Runtime's quantizer leaves control-flow bodies
    alone): a model without any would come back unchanged, or larger."""
    if any(n.op_type in COMPUTE for n in model.graph.node):
        return
    inner = sum(n.op_type in COMPUTE for n in all_nodes(model.graph))
    where = (f"all {inner} of them are inside If/Loop/Scan bodies, which ONNX Runtime's quantizer leaves in fp32"
             if inner else "it has none")
    raise UnsupportedError(f"model {origin}: nothing to quantize: int8 applies to Conv/MatMul/Gemm of the main "
                           f"graph and {where}", hint="export the model without control flow around its layers "
                                                      "(e.g. one graph per branch / sample rate)")


def _decomposed_layernorm(model: onnx.ModelProto) -> int:
    """Count ReduceMean -> Sub -> Pow -> ReduceMean chains (a LayerNorm exported op by op)."""
    readers = consumers(model.graph)
    count = 0
    for n in model.graph.node:
        if n.op_type != "ReduceMean":
            continue
        subs = [c for c in readers.get(n.output[0], []) if c.op_type == "Sub"]
        for s in subs:
            if any(c.op_type == "Pow" for c in readers.get(s.output[0], [])):
                count += 1
                break
    return count


def is_transformer(model: onnx.ModelProto) -> bool:
    ops = Counter(n.op_type for n in model.graph.node)
    attention = ops["Softmax"] > 0 and ops["MatMul"] >= 2
    return bool(ops["LayerNormalization"] or _decomposed_layernorm(model) or attention)


def transformer_pass(src: Path, dest: Path, result: PreprocessResult) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    try:  # num_heads=0, hidden_size=0: ORT's optimizer detects them from the graph
        opt = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        stats = {k: int(v) for k, v in (opt.get_fused_operator_statistics() or {}).items() if v}
        opt.save_model_to_file(str(dest), use_external_data_format=False)
    except Exception as exc:  # the optimizer raises assorted errors on graphs it does not recognise
        result.fallbacks.append(f"transformer optimizer failed ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:160]}); quantizing the unfused graph")
        return src
    result.transformer_fusions = stats
    if not stats:
        result.notes.append("transformer optimizer found nothing to fuse")
    return dest


@contextlib.contextmanager
def _ort_log_collected(errors: list[str], label: str):
    """ORT's quant_pre_process logs its own failures (with a full traceback) through its module logger, which
    reaches stderr via logging's last-resort handler: keep the first line as a reported fallback instead."""
    lg = logging.getLogger("onnxruntime.quantization.shape_inference")

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
            if line and not line.startswith("Traceback"):
                errors.append(f"quant_pre_process({label}): ORT: {line[:160]}")

    handler, propagate = _Collect(), lg.propagate
    lg.addHandler(handler)
    lg.propagate = False
    try:
        yield
    finally:
        lg.removeHandler(handler)
        lg.propagate = propagate


def pre_process(src: Path, dest: Path, result: PreprocessResult) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    errors: list[str] = []
    for label, kwargs in PRE_PROCESS_ATTEMPTS:
        try:
            with _ort_log_collected(errors, label):
                quant_pre_process(str(src), str(dest), **kwargs, **_external_kwargs(src, dest))
        except Exception as exc:  # symbolic shape inference raises bare Exceptions on unknown patterns
            errors.append(f"quant_pre_process({label}) failed: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:160]}")
            continue
        result.pre_process = label
        result.fallbacks.extend(errors)
        if errors:
            result.fallbacks.append(f"quant_pre_process succeeded with {label}")
        return dest
    result.fallbacks.extend(errors)
    result.fallbacks.append("quant_pre_process failed in every mode; quantizing without pre-processing")
    return src


def _external_kwargs(src: Path, dest: Path) -> dict[str, object]:
    """quant_pre_process writes a model over 2 GB with external data (`<dest name>.data` beside it)."""
    if model_bytes(src) < LARGE:
        return {}
    return {"save_as_external_data": True, "all_tensors_to_one_file": True,
            "external_data_location": data_file_name(dest)}


def prepare(model: onnx.ModelProto, src: Path, workdir: Path) -> PreprocessResult:
    """Run the pre-passes on `src` (already loaded as `model`) inside `workdir`; the input file is untouched."""
    result = PreprocessResult(path=src)
    bn_before = sum(1 for n in model.graph.node if n.op_type == "BatchNormalization")
    cur = src
    if is_transformer(model):
        cur = transformer_pass(cur, workdir / "fused.onnx", result)
    cur = pre_process(cur, workdir / "preprocessed.onnx", result)
    try:
        m = onnx.load(str(cur))
    except Exception as exc:
        raise RuntimeFailure(f"pre-processed model cannot be read back: {exc}") from None
    bn_after = sum(1 for n in m.graph.node if n.op_type == "BatchNormalization")
    result.batchnorm_folded = bn_before - bn_after
    if bn_after:
        result.notes.append(f"{bn_after} BatchNormalization node(s) could not be folded into a preceding conv")
    result.path = cur
    result.model = m
    return result
