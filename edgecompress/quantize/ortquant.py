"""One quantization candidate and the call into onnxruntime.quantization that produces it.

No QDQ node is written by hand: static candidates go through `quantize_static` (QDQ or QOperator) with the
activation ranges handed over as ORT's calibration cache; dynamic ones through `quantize_dynamic`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from ..errors import RuntimeFailure, UnsupportedError
from ..onnxgraph.io import LARGE, model_bytes


@dataclass(frozen=True)
class Candidate:
    mode: str = "static"  # static | dynamic
    format: str = "qdq"  # qdq | qoperator (dynamic: always operator form)
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    method: str = "minmax"  # calibration method ("runtime" for dynamic)
    equalized: bool = False  # built from the pre-pass model: CLE + stream smoothing, or MatMul-input smoothing
    rounded: bool = False  # weights re-rounded / clipped by output error (rounding.py), biases re-centred
    exclude: tuple[str, ...] = ()
    pre_pass: str = "CLE"  # what `equalized` means in the label

    @property
    def label(self) -> str:
        if self.mode == "dynamic":
            base = f"dynamic {'per-channel' if self.per_channel else 'per-tensor'}"
        else:
            act = "U8" if self.activation_type == "uint8" else "S8"
            wt = "S8" if self.weight_type == "int8" else "U8"
            base = (f"static {self.format.upper()} {act}{wt} {'per-channel' if self.per_channel else 'per-tensor'} "
                    f"{self.method}")
        if self.reduce_range:
            base += " reduce-range"
        if self.equalized:
            base += f" +{self.pre_pass}"
        if self.rounded:
            base += " +rounding"
        if self.exclude:
            base += f" ({len(self.exclude)} fp32)"
        return base

    def with_(self, **kw) -> Candidate:
        return replace(self, **kw)


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


def run_quantizer(src: Path, dest: Path, cand: Candidate, cache: Path | None = None) -> Path:
    """Quantize `src` into `dest` (both inside the private work dir) as `cand` says."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_dynamic, quantize_static

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    # a model over 2 GB (its weights in external data) is quantized with external data too: ORT's quantizer
    # cannot write one protobuf that large; the stage folds a small result back into one file (copy_model)
    large = {"use_external_data_format": True} if model_bytes(src) >= LARGE else {}
    try:
        if cand.mode == "dynamic":
            quantize_dynamic(str(src), str(dest), per_channel=cand.per_channel, reduce_range=cand.reduce_range,
                             weight_type=_qtype(cand.weight_type), nodes_to_exclude=list(cand.exclude) or None,
                             extra_options=extra, **large)
        else:
            if cache is None:
                raise RuntimeFailure("static quantization needs calibrated ranges")
            fmt = QuantFormat.QDQ if cand.format == "qdq" else QuantFormat.QOperator
            quantize_static(str(src), str(dest), None, quant_format=fmt, per_channel=cand.per_channel,
                            reduce_range=cand.reduce_range, activation_type=_qtype(cand.activation_type),
                            weight_type=_qtype(cand.weight_type), nodes_to_exclude=list(cand.exclude) or None,
                            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                            extra_options=extra, **large)
    except (RuntimeFailure, UnsupportedError):
        raise
    except Exception as exc:  # ORT's quantizer raises ValueError/RuntimeError/KeyError/... on unsupported graphs
        text = " ".join(str(exc).split())[:300]
        raise UnsupportedError(f"ONNX Runtime cannot quantize this model as {cand.label}: "
                               f"{type(exc).__name__}: {text}",
                               hint="exclude the node named in the message (--exclude) or try --mode dynamic") \
            from None
    if not dest.is_file():
        raise RuntimeFailure(f"ONNX Runtime's quantizer wrote no model for {cand.label}")
    return dest
