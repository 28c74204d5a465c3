"""Feed data for examples/text_encoder.toml: token-embedding sequences for `zoo.seq_encoder` (no download).

Each feed is {"x": float32 (1, seq, 16)}: a seeded "sentence" of token ids looked up in a fixed random
embedding table, so sequences share structure (repeated tokens) the way embedded text does. Deterministic.
"""

from __future__ import annotations

import numpy as np

FEATURES = 16
VOCAB = 64


def _feeds(n: int, seed: int, seq: int = 16) -> list[dict[str, np.ndarray]]:
    table = np.random.default_rng(1234).standard_normal((VOCAB, FEATURES)).astype(np.float32)
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        ids = rng.zipf(1.5, size=seq) % VOCAB  # word frequencies are Zipf-like
        feeds.append({"x": table[ids][None]})
    return feeds


def train() -> list[dict[str, np.ndarray]]:
    return _feeds(256, seed=1)


def calibration() -> list[dict[str, np.ndarray]]:
    return _feeds(64, seed=2)


def eval() -> list[dict[str, np.ndarray]]:  # noqa: A001 - the recipe key is `eval`
    return _feeds(64, seed=3)
