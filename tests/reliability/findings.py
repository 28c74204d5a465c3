"""Open findings: (command, case) pairs that fail because a stage misbehaves. Each is detailed in FINDINGS.md.

The corpus test marks these xfail(strict=True): when the stage is fixed the test XPASSes, fails, and the entry
must be removed here (and the finding closed in FINDINGS.md).
"""

from __future__ import annotations

F1 = ("F1 inspect: exits 0 on a model the ONNX checker rejects (prints 'checker: ...' in yellow); issue 2 wants a "
      "corrupt .onnx to exit 2 (onnxgraph/inspect.py + cli/inspect_cmd.py)")
F3 = ("F3 quantize: when a write fails (EFBIG), ORT's quant_pre_process prints a Python traceback on stderr and "
      "ORT leaves 'model-inferred.onnx' beside the INPUT model (quantize/preprocess.py)")
F4 = ("F4 distill: a failed checkpoint write (ENOSPC/EFBIG) is 'internal error: RuntimeError: [enforce fail at "
      "inline_container.cc]' from torch.save, not an OutputError (distill checkpoint writing)")
F5 = ("F5 convert: a run failing in its first stage leaves OUT/ and an empty OUT/stages/ behind (pipeline/run.py)")

OPEN: dict[tuple[str, str], str] = {
    ("inspect", "model_bitflip_seed1"): F1,
    ("inspect", "model_bitflip_seed2"): F1,
    ("inspect", "model_opset_99"): F1,
    ("inspect", "model_ir_version_99"): F1,
    ("inspect", "model_dangling_input"): F1,
    ("quantize", "out_file_size_limit"): F3,
    ("convert", "recipe_corrupt_model"): F5,
    ("convert", "recipe_nan_calibration"): F5,
    ("convert", "out_full_disk"): F5,
    ("convert", "out_file_size_limit"): F3 + "; " + F5,
}

# tampering (tests/reliability/test_tampering.py): regions where verify accepts a tampered tarball or crashes
TAMPER_OPEN: dict[str, str] = {
}

# interruption trials (tests/reliability/test_interruption.py), by trial index
INTERRUPT_OPEN: dict[int, str] = {
}

# determinism (tests/reliability/test_determinism.py), by command
F8 = ("F8 distill: student.pt differs between two identical seeded runs: torch.save(obj, tmp_path) names the zip's "
      "root folder after the random temp file ('.student.pt.n1stcy1k/data.pkl') (distill/stage.py _save_checkpoint)")
DETERMINISM_OPEN: dict[str, str] = {
}
