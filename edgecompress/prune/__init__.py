"""Structured pruning on the ONNX graph: dependency groups, criteria, least-squares reconstruction.

    from edgecompress.prune import PruneConfig, prune
    result = prune("model.onnx", PruneConfig(target_macs=0.5), out="pruned.onnx", calibration="calib.npz")

Modules: config (PruneConfig), graphutil (onnx-ir helpers), groups + rules + attention (dependency analysis),
criteria (importance), select (ratio / magnitude / global MACs target), apply (ChannelRemovalPass),
reconstruct (LeastSquaresReconstruction), bnstats (BatchNormMomentMatching), compensate (MeanCompensation),
search (the max_drop budget: back-off bisection, the curve), report, stage (prune()).
"""

from typing import TYPE_CHECKING

from .._api import callable_module, lazy_exports
from .config import CRITERIA, PruneConfig
from .report import GroupReport, PruneReport, UnprunableGroup

if TYPE_CHECKING:
    from .stage import prune

__all__ = ["CRITERIA", "GroupReport", "PruneConfig", "PruneReport", "UnprunableGroup", "prune"]

lazy_exports(__name__, {"prune": "stage"})  # onnx-ir (and sympy) only when pruning
callable_module(__name__, "prune")
