"""Static / dynamic int8 quantization built on onnxruntime.quantization (see docs/quantize.md).

    from edgecompress.quantize import QuantizeConfig, quantize
    result = quantize("model.onnx", QuantizeConfig(), out="model.int8.onnx", calibration="calib.npz")
    result.report.to_dict()
"""

from typing import TYPE_CHECKING

from .._api import callable_module, lazy_exports
from .config import QuantizeConfig

if TYPE_CHECKING:
    from .report import QuantizeReport
    from .stage import quantize

__all__ = ["QuantizeConfig", "QuantizeReport", "quantize"]

lazy_exports(__name__, {"QuantizeReport": "report", "quantize": "stage"})
callable_module(__name__, "quantize")
