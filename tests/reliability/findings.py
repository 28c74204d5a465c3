"""Open findings: (command, case) pairs that fail because a stage misbehaves. Each is detailed in FINDINGS.md.

The corpus test marks these xfail(strict=True): when the stage is fixed the test XPASSes, fails, and the entry
must be removed here (and the finding closed in FINDINGS.md).
"""

from __future__ import annotations

OPEN: dict[tuple[str, str], str] = {
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
