"""Static / dynamic int8 quantization built on onnxruntime.quantization (see docs/quantize.md).

    from edgecompress.quantize import QuantizeConfig, quantize
    result = quantize("model.onnx", QuantizeConfig(), out="model.int8.onnx", calibration="calib.npz")
    result.report.to_dict()
"""

from .config import QuantizeConfig
from .report import QuantizeReport
from .stage import quantize

__all__ = ["QuantizeConfig", "QuantizeReport", "quantize"]

from .._api import callable_module  # noqa: E402

callable_module(__name__, "quantize")
