"""An ONNX graph run as a PyTorch module, so that a model which exists only as ONNX can be fine-tuned.

`OnnxModule(model)` executes the graph node by node with torch ops; the float initializers that act as weights
(of Conv, Gemm, MatMul, PRelu, the additive / multiplicative constants of Add / Mul / Sub, the scale and bias of
normalizations) are `nn.Parameter`s named after their initializers, the rest are buffers. `weights()` returns
them as numpy arrays, and `write_weights(model, weights)` puts them back into the same ONNX graph, which keeps its
structure, names and opset: ONNX Runtime runs the result and no export step can change the graph.

Fixed-batch exports (`Reshape` to a constant `[1, 1280]`) run with other batch sizes: a constant target shape whose
first dim is the graph's fixed batch takes the running batch instead. `check_parity` compares the module with ONNX
Runtime on real samples, so any op this interpreter gets wrong is caught before training.

Control flow (If / Loop / Scan), recurrent ops and quantized ops are not supported: `UnsupportedError` names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from ..data import FeedData
from ..errors import UnsupportedError, ValidationError

# (op, input index) pairs whose float constants are trainable weights; -1: any input
_TRAINABLE = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1), "PRelu": (1,),
              "Add": (-1,), "Sub": (-1,), "Mul": (-1,), "BatchNormalization": (1, 2),
              "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2)}
PARITY_TOL = 1e-3  # max |torch - ORT| / max |ORT| on an output
_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64, 9: torch.bool,
           10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


def _ints(t: torch.Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _sym_pads(pads: Sequence[int], rank: int) -> tuple[list[int] | None, list[int]]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] -> (symmetric per-dim padding or None, F.pad order)."""
    pads = list(pads) or [0] * (2 * rank)
    begin, end = pads[:rank], pads[rank:]
    fpad = [p for b, e in zip(reversed(begin), reversed(end), strict=True) for p in (b, e)]
    return (begin if begin == end else None), fpad


def _auto_pad(a: dict, x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int],
              dil: Sequence[int]) -> list[int]:
    mode = a.get("auto_pad", "NOTSET")
    rank = len(kernel)
    if mode in ("NOTSET", ""):
        return list(a.get("pads", [0] * (2 * rank)))
    if mode == "VALID":
        return [0] * (2 * rank)
    begin, end = [], []
    for i in range(rank):
        size = x.shape[2 + i]
        out = -(-size // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size)
        lo = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(lo)
        end.append(total - lo)
    return begin + end


def _conv(m: OnnxModule, a: dict, x, w, b=None):
    rank = w.dim() - 2
    strides, dil = a.get("strides", [1] * rank), a.get("dilations", [1] * rank)
    sym, fpad = _sym_pads(_auto_pad(a, x, w.shape[2:], strides, dil), rank)
    if sym is None:
        x, sym = F.pad(x, fpad), [0] * rank
    fn = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    return fn(x, w, b, stride=strides, padding=sym, dilation=dil, groups=a.get("group", 1))


def _pool(kind: str):
    def run(m: OnnxModule, a: dict, x):
        k = a["kernel_shape"]
        rank = len(k)
        strides, dil = a.get("strides", [1] * rank), a.get("dilations", [1] * rank)
        sym, fpad = _sym_pads(_auto_pad(a, x, k, strides, dil), rank)
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "max":
            if sym is None:
                x, sym = F.pad(x, fpad, value=float("-inf")), [0] * rank
            max_fn: Callable[..., torch.Tensor] = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1]
            return max_fn(x, k, strides, sym, dil, ceil_mode=ceil)
        include = bool(a.get("count_include_pad", 0))
        if sym is None:
            if not include and any(fpad):
                raise UnsupportedError("AveragePool with asymmetric pads and count_include_pad=0 is not supported "
                                       "by --recover")
            x, sym = F.pad(x, fpad), [0] * rank
        avg_fn: Callable[..., torch.Tensor] = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[rank - 1]
        return avg_fn(x, k, strides, sym, ceil_mode=ceil, count_include_pad=include)
    return run


def _axes(m: OnnxModule, a: dict, axes_in, rank: int) -> list[int] | None:
    axes = _ints(axes_in) if axes_in is not None else a.get("axes")
    return None if axes is None or len(axes) == 0 else [ax % rank for ax in axes]


def _reduce(fn: Callable):
    def run(m: OnnxModule, a: dict, x, axes_in=None):
        axes = _axes(m, a, axes_in, x.dim())
        keep = bool(a.get("keepdims", 1))
        if axes is None:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, axes, keep)
    return run


def _softmax(fn: Callable):
    def run(m: OnnxModule, a: dict, x):
        axis = a.get("axis", -1 if m.opset >= 13 else 1) % x.dim()
        if m.opset >= 13 or axis == x.dim() - 1:
            return fn(x, axis)
        shape = x.shape
        return fn(x.reshape(int(np.prod(shape[:axis])), -1), 1).reshape(shape)
    return run


def _reshape(m: OnnxModule, a: dict, x, shape):
    s = _ints(shape)
    if m.batch0 is not None and s and s[0] == m.batch0 and x.dim() and x.shape[0] != m.batch0 and m.batch_of(x):
        s[0] = x.shape[0]
    if not a.get("allowzero", 0):
        s = [x.shape[i] if v == 0 else v for i, v in enumerate(s)]
    return x.reshape(s)


def _gemm(m: OnnxModule, a: dict, x, w, c=None):
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if c is None else y + a.get("beta", 1.0) * c


def _gather(m: OnnxModule, a: dict, x, idx):
    axis = a.get("axis", 0) % x.dim()
    i = idx.long() % x.shape[axis]
    out = x.index_select(axis, i.reshape(-1))
    return out.reshape((*x.shape[:axis], *i.shape, *x.shape[axis + 1:]))


def _slice(m: OnnxModule, a: dict, x, starts=None, ends=None, axes=None, steps=None):
    if starts is None:  # opset < 10: attributes
        st, en, ax, sp = a["starts"], a["ends"], a.get("axes"), None
    else:
        st, en, ax, sp = _ints(starts), _ints(ends), (_ints(axes) if axes is not None else None), \
            (_ints(steps) if steps is not None else None)
    ax = list(range(len(st))) if ax is None else ax
    sp = [1] * len(st) if sp is None else sp
    idx = [slice(None)] * x.dim()
    for s, e, d, k in zip(st, en, ax, sp, strict=True):
        if k < 1:
            raise UnsupportedError("Slice with a negative step is not supported by --recover")
        n = x.shape[d % x.dim()]
        s = max(0, min(n, s + n if s < 0 else s))
        e = max(0, min(n, e + n if e < 0 else e))
        idx[d % x.dim()] = slice(s, e, k)
    return x[tuple(idx)]


def _split(m: OnnxModule, a: dict, x, split=None):
    axis = a.get("axis", 0) % x.dim()
    sizes = _ints(split) if split is not None else a.get("split")
    if not sizes:
        n = a.get("num_outputs") or m.current_outputs
        sizes = [-(-x.shape[axis] // n)] * (n - 1)
        sizes.append(x.shape[axis] - sum(sizes))
    return tuple(torch.split(x, list(sizes), dim=axis))


def _squeeze(m: OnnxModule, a: dict, x, axes=None):
    ax = _axes(m, a, axes, x.dim())
    if ax is None:
        return x.squeeze()
    for d in sorted(ax, reverse=True):
        x = x.squeeze(d)
    return x


def _unsqueeze(m: OnnxModule, a: dict, x, axes=None):
    ax = _ints(axes) if axes is not None else a["axes"]
    rank = x.dim() + len(ax)
    for d in sorted(v % rank for v in ax):
        x = x.unsqueeze(d)
    return x


def _pad(m: OnnxModule, a: dict, x, pads=None, value=None, axes=None):
    p = _ints(pads) if pads is not None else a["pads"]
    if axes is not None:
        full = [0] * (2 * x.dim())
        ax = [v % x.dim() for v in _ints(axes)]
        for i, d in enumerate(ax):
            full[d], full[x.dim() + d] = p[i], p[len(ax) + i]
        p = full
    _, fpad = _sym_pads(p, x.dim())
    mode = a.get("mode", "constant")
    if mode == "constant":
        v = float(value.reshape(-1)[0]) if value is not None and value.numel() else float(a.get("value", 0.0))
        return F.pad(x, fpad, value=v)
    return F.pad(x, fpad[: 2 * (x.dim() - 2)], mode={"reflect": "reflect", "edge": "replicate"}[mode])


def _resize(m: OnnxModule, a: dict, x, roi=None, scales=None, sizes=None):
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    size = _ints(sizes)[2:] if sizes is not None and sizes.numel() else None
    sc = [float(v) for v in scales.reshape(-1).tolist()][2:] if size is None and scales is not None else None
    if mode == "nearest" and ctm == "asymmetric" and a.get("nearest_mode", "round_prefer_floor") == "floor":
        return F.interpolate(x, size=size, scale_factor=sc, mode="nearest")
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        interp = ("linear", "bilinear", "trilinear")[x.dim() - 3]
        return F.interpolate(x, size=size, scale_factor=sc, mode=interp, align_corners=ctm == "align_corners")
    raise UnsupportedError(f"Resize mode={mode} coordinate_transformation_mode={ctm} is not supported by --recover")


def _layer_norm(m: OnnxModule, a: dict, x, scale, bias=None):
    axis = a.get("axis", -1) % x.dim()
    return F.layer_norm(x, x.shape[axis:], scale, bias, a.get("epsilon", 1e-5))


def _batch_norm(m: OnnxModule, a: dict, x, scale, bias, mean, var):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _clip(m: OnnxModule, a: dict, x, lo=None, hi=None):
    lo = a.get("min") if lo is None else lo
    hi = a.get("max") if hi is None else hi
    return torch.clamp(x, lo, hi)


def _constant_of_shape(m: OnnxModule, a: dict, shape):
    v = a.get("value")
    val = torch.as_tensor(np.asarray(v).reshape(-1)[0] if v is not None else np.float32(0.0))
    return torch.full(_ints(shape), val.item(), dtype=val.dtype, device=shape.device)


def _flatten(m: OnnxModule, a: dict, x):
    axis = a.get("axis", 1) % max(1, x.dim()) if x.dim() else 0
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _prelu(m: OnnxModule, a: dict, x, slope):
    return torch.where(x >= 0, x, x * slope)


def _expand(m: OnnxModule, a: dict, x, shape):
    return x.expand(torch.broadcast_shapes(x.shape, tuple(_ints(shape))))


def _where(m: OnnxModule, a: dict, c, x, y):
    return torch.where(c.bool(), x, y)


_OPS: dict[str, Callable[..., Any]] = {
    "Conv": _conv, "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda m, a, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "GlobalMaxPool": lambda m, a, x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
    "Gemm": _gemm, "MatMul": lambda m, a, x, y: x @ y,
    "Add": lambda m, a, x, y: x + y, "Sub": lambda m, a, x, y: x - y, "Mul": lambda m, a, x, y: x * y,
    "Div": lambda m, a, x, y: x / y if x.is_floating_point() else torch.div(x, y, rounding_mode="trunc"),
    "Pow": lambda m, a, x, y: torch.pow(x, y), "Sqrt": lambda m, a, x: torch.sqrt(x),
    "Exp": lambda m, a, x: torch.exp(x), "Log": lambda m, a, x: torch.log(x), "Erf": lambda m, a, x: torch.erf(x),
    "Tanh": lambda m, a, x: torch.tanh(x), "Sigmoid": lambda m, a, x: torch.sigmoid(x),
    "HardSigmoid": lambda m, a, x: torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1),
    "HardSwish": lambda m, a, x: F.hardswish(x), "Relu": lambda m, a, x: torch.relu(x),
    "LeakyRelu": lambda m, a, x: F.leaky_relu(x, a.get("alpha", 0.01)), "PRelu": _prelu, "Clip": _clip,
    "Gelu": lambda m, a, x: F.gelu(x, approximate="tanh" if a.get("approximate") == "tanh" else "none"),
    "Neg": lambda m, a, x: -x, "Abs": lambda m, a, x: torch.abs(x), "Reciprocal": lambda m, a, x: 1.0 / x,
    "Max": lambda m, a, *xs: _fold(torch.maximum, xs), "Min": lambda m, a, *xs: _fold(torch.minimum, xs),
    "Sum": lambda m, a, *xs: _fold(torch.add, xs),
    "Equal": lambda m, a, x, y: x == y, "Less": lambda m, a, x, y: x < y, "Greater": lambda m, a, x, y: x > y,
    "Not": lambda m, a, x: ~x.bool(), "Where": _where,
    "Cast": lambda m, a, x: x.to(_DTYPES[a["to"]]),
    "Identity": lambda m, a, x: x, "Dropout": lambda m, a, x, *rest: x,
    "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "ReduceMean": _reduce(lambda x, ax, k: x.mean(dim=ax, keepdim=k)),
    "ReduceSum": _reduce(lambda x, ax, k: x.sum(dim=ax, keepdim=k)),
    "ReduceMax": _reduce(lambda x, ax, k: x.amax(dim=ax, keepdim=k)),
    "Softmax": _softmax(lambda x, d: torch.softmax(x, d)), "LogSoftmax": _softmax(lambda x, d: torch.log_softmax(x, d)),
    "Reshape": _reshape, "Flatten": _flatten,
    "Transpose": lambda m, a, x: x.permute(a.get("perm", list(range(x.dim()))[::-1])),
    "Concat": lambda m, a, *xs: torch.cat(xs, dim=a["axis"]), "Split": _split, "Slice": _slice,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Gather": _gather,
    "Shape": lambda m, a, x: torch.tensor(x.shape[a.get("start", 0): a.get("end")], dtype=torch.int64,
                                          device=x.device),
    "Size": lambda m, a, x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device),
    "ConstantOfShape": _constant_of_shape, "Expand": _expand, "Pad": _pad, "Resize": _resize,
}


def _fold(fn, xs):
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


def _constant_value(a: dict[str, Any]) -> np.ndarray:
    if "value" in a:
        return np.asarray(a["value"])
    for k, v in a.items():
        return np.asarray(v, dtype=np.float32 if k.startswith("value_float") else np.int64)
    raise UnsupportedError("a Constant node without a value is not supported by --recover")


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    other = {f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    return sorted({o for o in ops if o not in _OPS and o != "Constant"} | other)


class OnnxModule(nn.Module):
    """An ONNX graph as a torch module: forward(*inputs) -> tuple of the graph's outputs, in order."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        bad = unsupported_ops(model)
        if bad:
            raise UnsupportedError(f"--recover cannot run this graph in PyTorch: unsupported op(s) {', '.join(bad)}",
                                   hint="recover supports feed-forward graphs of standard ONNX ops (no control flow, "
                                        "recurrent or quantized ops); prune without --recover")
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        g = model.graph
        init_names = {t.name for t in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in init_names]
        self.output_names = [o.name for o in g.output]
        first = g.input[0].type.tensor_type.shape.dim if g.input else []
        self.batch0 = first[0].dim_value if first and first[0].HasField("dim_value") else None
        consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.nodes = []
        for n in g.node:
            a = _attrs(n)
            if n.op_type == "Constant":
                consts[n.output[0]] = _constant_value(a)
            else:
                self.nodes.append((n.op_type, list(n.input), list(n.output), a))
        trainable: set[str] = set()
        for op, ins, _, _ in self.nodes:
            idx = _TRAINABLE.get(op, ())
            trainable.update(name for i, name in enumerate(ins) if name in consts and (i in idx or -1 in idx))
        self.params = nn.ParameterDict()
        self._names: dict[str, str] = {}  # constant name -> parameter / buffer key
        for k, (name, arr) in enumerate(consts.items()):
            key = f"t{k}"
            self._names[name] = key
            ten = torch.from_numpy(np.array(arr, copy=True))
            if name in trainable and arr.dtype.kind == "f" and arr.size > 1:
                self.params[key] = nn.Parameter(ten.float())
            else:
                self.register_buffer(key, ten, persistent=False)
        self.current_outputs = 1
        self._batch: int | None = None

    def batch_of(self, x: torch.Tensor) -> bool:
        return self._batch is not None and x.shape[0] == self._batch

    def _value(self, name: str) -> torch.Tensor:
        key = self._names[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: dict[str, Any] = dict(zip(self.input_names, inputs, strict=True))
        self._batch = inputs[0].shape[0] if inputs and inputs[0].dim() else None
        for name in self._names:
            env[name] = self._value(name)
        for op, ins, outs, a in self.nodes:
            args = [env[i] if i else None for i in ins]
            while args and args[-1] is None:
                args.pop()
            self.current_outputs = len(outs)
            res = _OPS[op](self, a, *args)
            if isinstance(res, tuple):
                env.update(zip(outs, res, strict=False))
            else:
                env[outs[0]] = res
        return tuple(env[o] for o in self.output_names)

    def trainable(self) -> dict[str, nn.Parameter]:
        """Initializer (or Constant) name -> its trainable parameter."""
        return {name: self.params[key] for name, key in self._names.items() if key in self.params}

    def weights(self) -> dict[str, np.ndarray]:
        """Initializer name -> its trained value (float32), for every trainable initializer."""
        inv = {v: k for k, v in self._names.items()}
        return {inv[k]: p.detach().float().cpu().numpy() for k, p in self.params.items()}


def check_parity(module: OnnxModule, model: onnx.ModelProto, data: FeedData, what: str) -> float:
    """Largest |torch - ORT| / max|ORT| over the float outputs of up to 2 samples; refuses above PARITY_TOL."""
    from ..onnxgraph.runtime import make_session

    sess = make_session(model.SerializeToString(), origin=what)
    worst = 0.0
    module.eval()
    for f in data.head(2).feeds():
        ref = sess.run(None, f)
        with torch.no_grad():
            got = module(*[torch.from_numpy(f[n]) for n in module.input_names])
        for name, r, g in zip(module.output_names, ref, got, strict=True):
            if np.asarray(r).dtype.kind != "f":
                continue
            err = float(np.abs(np.asarray(r) - g.float().numpy()).max() / (np.abs(r).max() + 1e-12))
            if not math.isfinite(err) or err > PARITY_TOL:
                raise ValidationError(f"the {what} run in PyTorch differs from ONNX Runtime on output "
                                      f"{name!r} (relative error {err:.3g} > {PARITY_TOL})",
                                      hint="an op of this graph is not interpreted faithfully; prune without "
                                           "--recover and with another --criterion than taylor")
            worst = max(worst, err)
    return worst


def write_weights(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` with the named initializers (and Constant node values) replaced, each keeping its dtype."""
    out = onnx.ModelProto()
    out.CopyFrom(model)

    def put(t: onnx.TensorProto, name: str) -> None:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        t.CopyFrom(numpy_helper.from_array(np.asarray(weights[name], dtype=dtype).reshape(tuple(t.dims)), t.name))

    for t in out.graph.initializer:
        if t.name in weights:
            put(t, t.name)
    for n in out.graph.node:
        if n.op_type == "Constant" and n.output[0] in weights:
            for a in n.attribute:
                if a.name == "value":
                    put(a.t, n.output[0])
    return out
