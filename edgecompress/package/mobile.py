"""ORT Mobile usability verdict for NNAPI / CoreML targets.

Uses the functions behind `python -m onnxruntime.tools.check_onnx_model_mobile_usability`: the model is
optimized to ORT's BASIC level (as the ORT format conversion does first), shapes are inferred, and the EP's
supported-operator list gives the partitions and the nodes that fall back to the CPU EP.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..fsutil import private_tempdir
from ..targets import TargetProfile
from .ortools import tool

_TOOL = "onnxruntime.tools.check_onnx_model_mobile_usability (usability_checker)"

# target EP -> checks of ORT's usability checker (CoreML has two model formats; both are reported)
_EP_CHECKS = {
    "NnapiExecutionProvider": ("NNAPI",),
    "CoreMLExecutionProvider": ("CoreML NeuralNetwork", "CoreML MLProgram"),
}


def mobile_verdict(onnx_path: Path, target: TargetProfile) -> dict[str, Any] | None:
    """None for targets without a mobile EP; else the checker's verdict per EP check."""
    ep = target.mobile_ep
    if ep is None:
        return None
    uc = tool("mobile_helpers.usability_checker")
    utils = tool("onnx_model_utils")
    ModelProtoWithShapeInfo, optimize_model = utils.ModelProtoWithShapeInfo, utils.optimize_model

    logging.getLogger("usability_checker").setLevel(logging.ERROR)
    checks = {
        "NNAPI": lambda m, fixed: uc.check_nnapi_partitions(m, fixed),
        "CoreML NeuralNetwork": lambda m, fixed: uc.check_coreml_partitions(m, fixed,
                                                                            "coreml_supported_neuralnetwork_ops.md"),
        "CoreML MLProgram": lambda m, fixed: uc.check_coreml_partitions(m, fixed, "coreml_supported_mlprogram_ops.md"),
    }
    with private_tempdir("edgecompress-mobile-") as work:
        opt = work / "model.basic.onnx"
        try:
            optimize_model(Path(onnx_path), opt, use_external_initializers=True)
            model = ModelProtoWithShapeInfo(opt).model_with_shape_info
            dynamic_inputs, num_dynamic = uc.check_shapes(model.graph)
            results = [_info_dict(name, checks[name](model, True)) for name in _EP_CHECKS[ep]]
        except Exception as exc:  # the checker's own failures (strict shape inference, unknown ops): recorded
            return {"tool": _TOOL, "execution_provider": ep, "verdict": "UNKNOWN", "dynamic_inputs": [],
                    "dynamic_values": 0, "checks": [],
                    "error": f"the usability checker failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    verdicts = [r["suitability"] for r in results]
    best = "YES" if "YES" in verdicts else "MAYBE" if "MAYBE" in verdicts else "NO"
    return {
        "tool": _TOOL,
        "execution_provider": ep,
        "verdict": best,
        "dynamic_inputs": [i.name for i in dynamic_inputs] if dynamic_inputs else [],
        "dynamic_values": int(num_dynamic),
        "checks": results,
    }


def _info_dict(name: str, info: Any) -> dict[str, Any]:
    n = max(int(info.num_nodes), 1)
    unsupported = sorted(info.unsupported_ops)
    return {
        "check": name,
        "suitability": info.suitability().name,
        "nodes": int(info.num_nodes),
        "supported_nodes": int(info.num_supported_nodes),
        "supported_pct": round(100.0 * info.num_supported_nodes / n, 1),
        "partitions": int(info.num_partitions),
        "unsupported_ops": unsupported,
        "nodes_unsupported_due_to_op": int(info.nodes_unsupported_due_to_op),
        "nodes_unsupported_due_to_dynamic_input": int(info.nodes_unsupported_due_to_dynamic_input),
        "ops_with_unsupported_rank": sorted(info.ops_with_unsupported_rank),
        "caveats": sorted(info.supported_ops_checker.get_caveats()),
    }
