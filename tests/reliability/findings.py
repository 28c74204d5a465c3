"""Open findings: (command, case) pairs that fail because a stage misbehaves. Each is detailed in FINDINGS.md.

The corpus test marks these xfail(strict=True): when the stage is fixed the test XPASSes, fails, and the entry
must be removed here (and the finding closed in FINDINGS.md).
"""

from __future__ import annotations

_INSPECT_CHECKER = ("F1 inspect: exits 0 on a model the ONNX checker rejects (prints 'checker: ...' in yellow); "
                    "issue 2 wants a corrupt .onnx to exit 2 (onnxgraph/inspect.py + cli/inspect_cmd.py)")

OPEN: dict[tuple[str, str], str] = {
    ("inspect", "model_bitflip_seed1"): _INSPECT_CHECKER,
    ("inspect", "model_bitflip_seed2"): _INSPECT_CHECKER,
    ("inspect", "model_opset_99"): _INSPECT_CHECKER,
    ("inspect", "model_ir_version_99"): _INSPECT_CHECKER,
    ("inspect", "model_dangling_input"): _INSPECT_CHECKER,
}
