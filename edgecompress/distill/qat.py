"""Quantization-aware fine-tuning: fake-quantize the student, train it under the teacher, export QDQ ONNX.

The student is traced with torch.fx, BatchNorms are folded into their convs, then every Conv/Linear gets
per-channel symmetric int8 weights (fake_quantize_per_channel_affine, straight-through gradients) and uint8
asymmetric fake-quant on its input and on its output (after a following ReLU when there is one). Activation
ranges are calibrated on a few batches, then tracked with an EMA while training. `torch.onnx.export` turns the
fake-quant ops into QuantizeLinear/DequantizeLinear pairs; ONNX Runtime fuses them into QLinearConv/QGemm
(int8 kernels), which `int8_ops` counts in the session's optimized graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import UnsupportedError
from ..fsutil import atomic_copy, private_tempdir

_RELU_MODS = (nn.ReLU, nn.ReLU6)
_RELU_FUNCS = {torch.relu, F.relu, F.relu6}
INT8_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "QLinearAdd",
            "DynamicQuantizeMatMul", "MatMulIntegerToFloat")


class ActFakeQuant(nn.Module):
    """uint8 asymmetric per-tensor fake quantization with EMA-tracked range."""

    lo: torch.Tensor  # buffers, registered in __init__
    hi: torch.Tensor
    seen: torch.Tensor

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.enabled = True
        self.frozen: tuple[float, int] | None = None

    def qparams(self) -> tuple[float, int]:
        if self.frozen is not None and not self.training:
            return self.frozen
        lo, hi = min(float(self.lo), 0.0), max(float(self.hi), 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        zp = int(round(-lo / scale))
        return scale, max(0, min(255, zp))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.detach().min().float(), x.detach().max().float()
                if int(self.seen) == 0:
                    self.lo.copy_(lo)
                    self.hi.copy_(hi)
                else:
                    self.lo.lerp_(lo, self.momentum)
                    self.hi.lerp_(hi, self.momentum)
                self.seen += 1
        if not self.enabled:
            return x
        scale, zp = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255)


def _fq_weight(mod: QConv2d | QLinear, axis: int = 0) -> torch.Tensor:
    """Per-channel symmetric int8 fake quant of mod.weight; the scale is a buffer (updated while training), so
    the exported QuantizeLinear takes a constant scale."""
    w = mod.weight
    if mod.training or not bool(mod.w_ready):
        with torch.no_grad():
            dims = [d for d in range(w.dim()) if d != axis]
            mod.w_scale.copy_((w.detach().abs().amax(dim=dims) / 127.0).clamp_min(1e-8).float())
            mod.w_ready.fill_(True)
    return torch.fake_quantize_per_channel_affine(w, mod.w_scale, mod.w_zp, axis, -128, 127)


class _QMixin:
    """The weight fake-quant buffers of a QConv2d / QLinear (registered by _init_q)."""

    w_scale: torch.Tensor
    w_zp: torch.Tensor
    w_ready: torch.Tensor

    def _init_q(self, n: int) -> None:
        if not isinstance(self, nn.Module):
            raise TypeError(f"_QMixin needs an nn.Module, got {type(self).__name__}")
        self.register_buffer("w_scale", torch.ones(n))
        self.register_buffer("w_zp", torch.zeros(n, dtype=torch.int32))
        self.register_buffer("w_ready", torch.zeros((), dtype=torch.bool))


class QConv2d(nn.Conv2d, _QMixin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _fq_weight(self), self.bias)


class QLinear(nn.Linear, _QMixin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _fq_weight(self), self.bias)


def _swap(m: nn.Module) -> nn.Module:
    q: QConv2d | QLinear
    if isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d:
        # torch types Conv2d's kernel_size/stride/padding/dilation as tuple[int, ...], its constructor as 2-tuples
        q = QConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,  # type: ignore[arg-type]
                    m.dilation, m.groups, m.bias is not None, m.padding_mode)  # type: ignore[arg-type]
    elif isinstance(m, nn.Linear) and type(m) is nn.Linear:
        q = QLinear(m.in_features, m.out_features, m.bias is not None)
    else:
        return m
    q._init_q(q.weight.shape[0])
    q.load_state_dict(m.state_dict(), strict=False)
    return q


def prepare_qat(student: nn.Module) -> fx.GraphModule:
    """Fold BN, swap Conv2d/Linear for fake-quant versions, insert activation fake-quant (returns a new module)."""
    from torch.fx.experimental.optimization import fuse

    was = student.training
    student.eval()
    try:
        gm = fuse(student)
    except Exception as exc:
        raise UnsupportedError(f"--qat needs a torch.fx-traceable student; tracing failed: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:160]}") from None
    finally:
        student.train(was)
    if not isinstance(gm, fx.GraphModule):  # fuse() returns a GraphModule; this narrows its declared nn.Module
        raise UnsupportedError(f"--qat: BN folding returned a {type(gm).__name__}, not a torch.fx GraphModule")
    mods = dict(gm.named_modules())
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(mods[node.target]) not in (nn.Conv2d, nn.Linear):
            continue
        parent, _, attr = node.target.rpartition(".")
        owner = gm.get_submodule(parent) if parent else gm
        setattr(owner, attr, _swap(mods[node.target]))
        # input fake-quant
        src = node.args[0]
        name_in = f"_fq_in_{count}"
        gm.add_submodule(name_in, ActFakeQuant())
        with gm.graph.inserting_before(node):
            fq_in = gm.graph.call_module(name_in, (src,))
        node.replace_input_with(src, fq_in)
        # output fake-quant, after a ReLU that is the only user
        tail = node
        users = list(node.users)
        if len(users) == 1:
            u = users[0]
            if (u.op == "call_module" and isinstance(mods.get(u.target), _RELU_MODS)) or \
                    (u.op == "call_function" and u.target in _RELU_FUNCS) or (u.op == "call_method" and u.target == "relu"):
                tail = u
        name_out = f"_fq_out_{count}"
        gm.add_submodule(name_out, ActFakeQuant())
        with gm.graph.inserting_after(tail):
            fq_out = gm.graph.call_module(name_out, (tail,))
        tail.replace_all_uses_with(fq_out, delete_user_cb=lambda n, fq=fq_out: n is not fq)
        count += 1
    if not count:
        raise UnsupportedError("--qat found no Conv2d/Linear layer to quantize in the student")
    gm.graph.lint()
    gm.recompile()
    return gm


@torch.no_grad()
def calibrate(gm: nn.Module, inputs: dict[str, torch.Tensor], batches: int = 8, batch_size: int = 64) -> None:
    fqs = [m for m in gm.modules() if isinstance(m, ActFakeQuant)]
    for m in fqs:
        m.enabled = False
    gm.train()
    n = next(iter(inputs.values())).shape[0]
    for i in range(min(batches, max(1, (n + batch_size - 1) // batch_size))):
        gm(*[v[i * batch_size:(i + 1) * batch_size] for v in inputs.values()])
    for m in fqs:
        m.enabled = True


def export_qdq(gm: nn.Module, example: dict[str, torch.Tensor], names: list[str], dest: Path) -> Path:
    import warnings

    gm = gm.cpu().eval()
    for m in gm.modules():
        if isinstance(m, ActFakeQuant):
            m.frozen = None
            m.frozen = m.qparams()
    with private_tempdir() as tmp:
        path = tmp / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(gm, tuple(v[:1].cpu() for v in example.values()), str(path), dynamo=False,
                              opset_version=17, input_names=names, output_names=["output"],
                              dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}})
        atomic_copy(path, dest)
    return dest


def ort_eval(path: Path, names: list[str], inputs: dict[str, torch.Tensor], labels: torch.Tensor | None,
             teacher_out: torch.Tensor) -> dict[str, Any]:
    """Run the QDQ model in ONNX Runtime: metric on val and which int8 kernels the optimized graph uses."""
    import onnx

    from ..onnxgraph.runtime import make_session
    from .trainer import metric_of

    with private_tempdir() as tmp:
        opt = tmp / "opt.onnx"
        sess = make_session(path, threads=1, optimized_path=str(opt), graph_optimization="extended",
                            origin=str(path))
        ops = [n.op_type for n in onnx.load(str(opt)).graph.node]
    # a fresh session with all optimizations for the numbers
    sess = make_session(path, threads=1, origin=str(path))
    n = next(iter(inputs.values())).shape[0]
    outs = []
    for i in range(0, n, 256):
        feed = {name: v[i:i + 256].numpy() for name, v in zip(names, inputs.values(), strict=True)}
        outs.append(sess.run(None, feed)[0])
    out = torch.from_numpy(np.concatenate(outs))
    name, value = metric_of(out, teacher_out, labels, "kd")
    int8 = {op: ops.count(op) for op in INT8_OPS if op in ops}
    return {"metric": name, "value": value, "int8_ops": int8, "ops": sorted(set(ops)),
            "float_convs": ops.count("Conv") + ops.count("Gemm") + ops.count("MatMul")}

