"""Run a model on calibration feeds and collect intermediate tensors (helper for the recovery passes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from ..onnxgraph.extra_outputs import session_with_outputs
from .graphutil import to_proto


def collect(model: onnx.ModelProto | ir.Model, names: Sequence[str], feeds: Sequence[dict]) -> dict[str, list[np.ndarray]]:
    """name -> one array per feed (intermediate tensors are exposed as extra graph outputs of a copy)."""
    proto = to_proto(model) if isinstance(model, ir.Model) else model
    sess = session_with_outputs(proto, names, origin="model (calibration pass)")
    names = list(names)
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for n, r in zip(names, sess.run(names, feed), strict=False):
            out[n].append(np.asarray(r))
    return out


class CalibratedPass:
    """A recovery pass on the pruned IR that reads the original model on calibration feeds."""

    def __init__(self, reference: onnx.ModelProto, analysis, keep: Mapping[int, np.ndarray],
                 feeds: Sequence[dict]) -> None:
        self.reference = reference
        self.analysis = analysis  # groups.Analysis
        self.keep = keep
        self.feeds = list(feeds)
        self.notes: list[str] = []

    def _kept_out(self, node: str, n: int) -> np.ndarray:
        """The output channels of `node` (of `n` before pruning) that are kept."""
        for gid, kept in self.keep.items():
            for sl in self.analysis.groups[gid].slices:
                if sl.node == node and sl.kind == "weight_out":
                    return sl.tensor_indices(kept)
        return np.arange(n)
