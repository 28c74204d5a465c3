"""One comparison of two models over every output: task metrics (top-1 agreement / top-5 containment / accuracy
for class scores, decision agreement for scalar probabilities, matched-detection recall for named box/score
outputs) and tensor metrics (balanced cosine, per-slice cosine and SQNR, relative error) -- used by every stage
that changes numbers, by bench, package and the pipeline summary. See docs/fidelity.md.

    from edgecompress.fidelity import CompareConfig, compare_models
    rep = compare_models("model.onnx", "model.int8.onnx", load_data("held_out.npz"), CompareConfig())
    rep.drop, rep.headline(), rep.to_dict()
"""

from typing import TYPE_CHECKING

from .._api import lazy_exports
from .config import METRICS, CompareConfig, DetectionSpec, OutputRef, parse_state

if TYPE_CHECKING:
    from .compare import (
        FidelityReport,
        Outputs,
        better,
        compare_models,
        detect_state,
        holdout,
        judge,
        resolve_state,
        run_outputs,
    )
    from .detection import DetectionFidelity, detection_fidelity
    from .metrics import OutputFidelity, channel_axis, label_accuracy, tensor_metrics

__all__ = ["METRICS", "CompareConfig", "DetectionFidelity", "DetectionSpec", "FidelityReport", "OutputFidelity",
           "OutputRef", "Outputs", "better", "channel_axis", "compare_models", "detect_state", "detection_fidelity", "holdout",
           "judge", "label_accuracy", "parse_state", "resolve_state", "run_outputs", "tensor_metrics"]

lazy_exports(__name__, {**{n: "compare" for n in ("FidelityReport", "Outputs", "better", "compare_models",
                                                   "detect_state", "holdout", "judge", "resolve_state", "run_outputs")},
                        "DetectionFidelity": "detection", "detection_fidelity": "detection",
                        **{n: "metrics" for n in ("OutputFidelity", "channel_axis", "label_accuracy", "tensor_metrics")}})
