"""--compare-scratch: the same student from the same start, on hard labels only; the report's gain is real."""

from __future__ import annotations

import numpy as np
import pytest

from edgecompress.distill import distill
from edgecompress.errors import ConfigError

from .conftest import spec
from .test_train import _cfg


def test_scratch_run_equals_a_separate_hard_label_run(mnist_small, tmp_path):
    train, val = mnist_small
    both = distill(_cfg(compare_scratch=True), data=train, val=val, out=tmp_path / "kd.pt")
    alone = distill(_cfg(alpha=0.0), data=train, val=val, out=tmp_path / "ce.pt")
    kd_only = distill(_cfg(), data=train, val=val, out=tmp_path / "kd_only.pt")
    rep = both.report
    assert rep.val_metric == kd_only.report.val_metric  # the extra run does not touch the KD student
    assert rep.scratch["accuracy"] == pytest.approx(alone.report.val_metric)
    assert rep.scratch["best_epoch"] == alone.report.best_epoch
    assert [h["accuracy"] for h in rep.scratch["history"]] == [h["accuracy"] for h in alone.report.history]
    assert rep.scratch["kd_gain"] == pytest.approx(rep.val_metric - alone.report.val_metric)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ce.pt", "ce.pt.state", "kd.pt", "kd.pt.state",
                                                          "kd_only.pt", "kd_only.pt.state"]  # no scratch state left


def test_scratch_needs_labels_and_the_kd_loss(mnist_small, tmp_path):
    train, val = mnist_small
    z = np.load(train)
    unlabeled = tmp_path / "u.npz"
    np.savez(unlabeled, input=z["input"])
    with pytest.raises(ConfigError, match="compare_scratch trains the student on hard labels"):
        distill(_cfg(compare_scratch=True), data=unlabeled, val=unlabeled, out=tmp_path / "s.pt")
    assert not (tmp_path / "s.pt").exists()
    with pytest.raises(ConfigError, match="compare_scratch needs loss kd"):
        _cfg(compare_scratch=True, loss="cosine", teacher=spec("embedder_teacher"), student=spec("embedder_student"))
