from __future__ import annotations

import pytest

from edgecompress.distill import DistillConfig
from edgecompress.distill.config import parse_derivation
from edgecompress.errors import ConfigError

T = "examples/mnist_models.py:teacher"
S = "examples/mnist_models.py:student"


@pytest.mark.parametrize("kwargs, match", [
    ({"teacher": "nocolon"}, "teacher"),
    ({"teacher": T}, "exactly one of student"),
    ({"teacher": T, "student": S, "student_from_teacher": "width=0.5"}, "exactly one of student"),
    ({"teacher": T, "student": "x"}, "student must be a SPEC"),
    ({"teacher": T, "student_from_teacher": "width=1.5"}, "width must be in"),
    ({"teacher": T, "student_from_teacher": "depth=1"}, "depth must be an integer"),
    ({"teacher": T, "student_from_teacher": "height=2"}, "student_from_teacher"),
    ({"teacher": T, "student_from_teacher": "width=0.5", "student_weights": "w.pt"}, "student_weights"),
    ({"teacher": T, "student": S, "epochs": 0}, "epochs"),
    ({"teacher": T, "student": S, "epochs": 2.5}, "epochs"),
    ({"teacher": T, "student": S, "batch_size": 0}, "batch_size"),
    ({"teacher": T, "student": S, "lr": 0}, "lr"),
    ({"teacher": T, "student": S, "lr": float("nan")}, "lr"),
    ({"teacher": T, "student": S, "temperature": -1}, "temperature"),
    ({"teacher": T, "student": S, "alpha": 1.5}, "alpha"),
    ({"teacher": T, "student": S, "optimizer": "adam"}, "optimizer"),
    ({"teacher": T, "student": S, "loss": "l1"}, "loss"),
    ({"teacher": T, "student": S, "device": "tpu"}, "device"),
    ({"teacher": T, "student": S, "val_fraction": 1.0}, "val_fraction"),
    ({"teacher": T, "student": S, "feature_kd": ("layer1",)}, "feature_kd"),
    ({"teacher": T, "student": S, "warmup_epochs": 10, "epochs": 10}, "warmup_epochs"),
    ({"teacher": T, "student": S, "weight_decay": -1}, "weight_decay"),
    ({"teacher": T, "student": S, "seed": -1}, "seed"),
    ({"teacher": T, "student": S, "augment_rotate": -5}, "augment_rotate"),
    ({"teacher": T, "student": S, "augment_rotate": 400}, "augment_rotate"),
    ({"teacher": T, "student": S, "augment_scale": 1.0}, "augment_scale"),
    ({"teacher": T, "student": S, "augment_scale": float("inf")}, "augment_scale"),
])
def test_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DistillConfig(**kwargs)


def test_good_config_and_derivation():
    cfg = DistillConfig(teacher=T, student_from_teacher="width=0.25", feature_kd=["layer1:features.0"])
    assert cfg.derivation == ("width", 0.25)
    assert cfg.feature_pairs == [("layer1", "features.0")]
    assert parse_derivation("depth=3") == ("depth", 3.0)
