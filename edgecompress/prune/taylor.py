"""`--criterion taylor`: first-order Taylor importance of each channel (Molchanov et al. 2017 / 2019), label-free.

Zeroing channel c changes a differentiable function L of the outputs by about -sum(w * dL/dw) over the channel's
parameters (its producer weights and bias, depthwise weights, BatchNorm scale and shift): by linearity that sum is
the channel's pre-activation times dL/d(pre-activation), summed over positions. The importance is the mean over
calibration samples of its square.

Without labels the loss is a distillation of the model's outputs against themselves, whose gradient vanishes at
the original weights; its curvature does not. So L is a random probe of the outputs, L = sum_o <v_o, y_o> / std_o
with v_o standard normal: E_v[(w . dL/dw)^2] is then the squared change the channel's removal makes to the
(std-normalized) outputs, i.e. the Fisher / Gauss-Newton estimate of the distillation loss it costs. Two probes
per sample. The graph runs in PyTorch through edgecompress.distill.onnx_module (checked against ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from ..data import FeedData
from .criteria import slice_channels
from .groups import Analysis

KINDS = ("weight_out", "dw_weight", "bias", "bn_scale", "bn_bias")
PROBES = 2
SAMPLES = 64


def taylor_scores(model: onnx.ModelProto, analysis: Analysis, gids: Sequence[int], data: FeedData,
                  seed: int = 0) -> dict[int, np.ndarray]:
    """Group id -> per-channel importance (root mean square of the per-sample, per-probe first-order change)."""
    import torch

    from ..distill.onnx_module import OnnxModule, check_parity

    mod = OnnxModule(model)
    check_parity(mod, model, data, "model (taylor criterion)")
    mod.eval()
    params = mod.trainable()
    wanted = {gid: [sl for sl in analysis.groups[gid].slices if sl.kind in KINDS and sl.value in params]
              for gid in gids}
    feeds = data.head(SAMPLES).feeds()
    xs = [[torch.from_numpy(f[n]) for n in mod.input_names] for f in feeds]
    with torch.no_grad():
        outs = [mod(*x) for x in xs]
    floats = [i for i, t in enumerate(outs[0]) if t.is_floating_point()]
    std = [max(float(torch.cat([o[i].reshape(-1) for o in outs]).std()), 1e-12) for i in floats]
    acc = {gid: np.zeros(analysis.groups[gid].size) for gid in gids}
    g = torch.Generator().manual_seed(seed)
    n = 0
    for x in xs:
        for _ in range(PROBES):
            mod.zero_grad(set_to_none=True)
            y = mod(*x)
            loss = sum((torch.randn(y[i].shape, generator=g) * y[i]).sum() / s
                       for i, s in zip(floats, std, strict=True))
            loss.backward()
            for gid, slices in wanted.items():
                size = analysis.groups[gid].size
                d = np.zeros(size)
                for sl in slices:
                    p = params[sl.value]
                    if p.grad is None:
                        continue
                    wg = (p.detach() * p.grad).numpy()
                    d += slice_channels(wg, sl, size).sum(1)
                acc[gid] += d ** 2
            n += 1
    return {gid: np.sqrt(v / max(n, 1)) for gid, v in acc.items()}
