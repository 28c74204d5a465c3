"""Feed data -> tensors for training: keys mapped to forward() parameter names, labels checked, fixed split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import LABELS, FeedData, load_data
from ..errors import DataError


@dataclass
class TensorSet:
    """All samples stacked: inputs name -> tensor (N, ...), labels (N,) int64 or None."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    source: str

    @property
    def n(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def index(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        return ({k: v[idx] for k, v in self.inputs.items()},
                self.labels[idx] if self.labels is not None else None)


def to_tensors(data: FeedData, names: list[str], *, what: str, max_samples: int | None = None) -> TensorSet:
    """Stack a FeedData and key it by the model's forward() names (a single-input model takes the one key)."""
    if data.n == 0:
        raise DataError(f"{what} {data.source}: empty: expected at least one sample, found 0")
    if max_samples is not None and data.n > max_samples:
        data = data.head(max_samples)
    stacked = data.stacked()
    stacked.pop(LABELS, None)
    keys = sorted(stacked)
    if not keys:
        raise DataError(f"{what} {data.source}: no input arrays besides '{LABELS}'")
    if set(keys) != set(names):
        if len(names) == 1 and len(keys) == 1:
            stacked = {names[0]: stacked[keys[0]]}
        else:
            raise DataError(f"{what} {data.source}: keys {keys} do not match the model's forward() parameters "
                            f"{names}", hint="name the .npz keys after forward()'s parameters")
    inputs: dict[str, torch.Tensor] = {}
    for k, a in stacked.items():
        a = np.ascontiguousarray(a)
        if a.dtype.kind == "f":
            if not np.isfinite(a).all():
                raise DataError(f"{what} {data.source}: input {k!r} contains NaN or Inf; expected finite values")
            a = a.astype(np.float32, copy=False)
        elif a.dtype.kind in "iu":
            a = a.astype(np.int64, copy=False)
        elif a.dtype.kind != "b":
            raise DataError(f"{what} {data.source}: input {k!r} has dtype {a.dtype}; expected float, int or bool")
        inputs[k] = torch.from_numpy(a)
    labels = None
    if data.labels is not None:
        lab = np.asarray(data.labels)
        if lab.dtype == object or lab.dtype.kind not in "iu":
            raise DataError(f"{what} {data.source}: '{LABELS}' must be integer class indices, found dtype {lab.dtype}")
        labels = torch.from_numpy(lab.astype(np.int64).reshape(lab.shape[0], -1).squeeze(1))
    ts = TensorSet(inputs, labels, data.source)
    if labels is not None and labels.shape[0] != ts.n:
        raise DataError(f"{what} {data.source}: {labels.shape[0]} labels for {ts.n} samples")
    return ts


def check_labels(ts: TensorSet, num_classes: int, what: str) -> None:
    if ts.labels is None:
        return
    lo, hi = int(ts.labels.min()), int(ts.labels.max())
    if lo < 0 or hi >= num_classes:
        bad = hi if hi >= num_classes else lo
        raise DataError(f"{what} {ts.source}: labels out of range: found {bad}, expected 0..{num_classes - 1} "
                        f"(the teacher has {num_classes} outputs)")


def load_train_val(data, val, *, seed: int, val_fraction: float) -> tuple[FeedData, FeedData, str]:
    """Train and val FeedData; without `val`, a fixed seeded split of `data` (independent of the training seed)."""
    train = load_data(data, what="training data")
    if train.n == 0:
        raise DataError(f"training data {train.source}: empty: expected at least one sample, found 0")
    if val is not None:
        v = load_data(val, what="validation data")
        if v.n == 0:
            raise DataError(f"validation data {v.source}: empty: expected at least one sample, found 0")
        return train, v, "given"
    if train.n < 2:
        raise DataError(f"training data {train.source}: {train.n} sample is too few to split off validation data")
    del seed  # the split is fixed so that runs with different seeds compare on the same val set
    tr, v = train.split(val_fraction, seed=0)
    return tr, v, f"fixed split ({val_fraction:.0%} of the data, split seed 0)"
