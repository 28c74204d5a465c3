"""A student from a model pruned by `edgecompress prune`, mapped back onto the teacher's PyTorch class.

`edgecompress prune` removes whole channels / hidden units on the ONNX graph, so the pruned model is the teacher's
architecture with fewer channels (and, with reconstruction, re-fitted weights). Mapping it back:

1. the teacher is traced with torch.fx; its Conv/Linear calls in execution order are paired with the pruned
   graph's Conv / Gemm / MatMul(+Add) nodes with constant weights, in graph order (both follow the forward code);
2. each module takes the pruned layer's shapes and weights (the same slicing as the width derivation, so the
   student is the teacher's own class and forward()); a BatchNorm right after a conv/linear takes the graph's
   BatchNormalization, or — when the exporter folded it into the layer — is rebuilt from the statistics of its
   input on real samples (exact in eval mode, and batch statistics in training start close to the running ones);
3. the student is checked against the pruned model in ONNX Runtime on real samples. A model that cannot be mapped
   exactly (other layer counts or kernels, quantized, heads pruned inside an attention module whose head count is
   an attribute) is refused with one line saying why.

The plan stored in the checkpoint has the width derivation's form (kept index ranges per module), so
`load_student` rebuilds the module from the teacher factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, UnsupportedError
from .students import slice_module, trace_teacher

PARITY_TOL = 1e-3  # max |student - pruned model| relative to the output scale


@dataclass
class _Layer:
    node: str
    op: str                      # conv | linear
    weight: np.ndarray           # PyTorch layout: conv [O, I/g, k...], linear [out, in]
    bias: np.ndarray | None
    group: int = 1
    bn: tuple[np.ndarray, ...] | None = None   # scale, bias, mean, var of a following BatchNormalization
    bn_eps: float = 1e-5


def _fail(msg: str) -> UnsupportedError:
    return UnsupportedError(f"cannot map the pruned model back onto the teacher: {msg}",
                            hint="give the fp32 model written by `edgecompress prune` from this teacher's export")


def _graph_layers(path: Path) -> tuple[list[_Layer], Any]:
    import onnx
    from onnx import numpy_helper

    from ..onnxgraph.census import consumers

    if path.is_dir():
        raise InputError(f"pruned model {path} is a folder, not an .onnx file",
                         hint="give the .onnx written by `edgecompress prune`")
    if not path.is_file():
        raise InputError(f"pruned model not found: {path}", hint="give the .onnx written by `edgecompress prune`")
    if path.stat().st_size == 0:
        raise InputError(f"pruned model {path} is empty (0 bytes)", hint="give the .onnx written by `edgecompress prune`")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input file
        raise InputError(f"pruned model {path} is not a readable ONNX model: {type(exc).__name__}") from None
    g = model.graph
    init = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type in ("Constant", "Transpose", "Identity")}

    def const(name: str) -> np.ndarray | None:
        if name in init:
            return numpy_helper.to_array(init[name])
        n = consts.get(name)
        if n is not None and n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            return numpy_helper.to_array(n.attribute[0].t)
        if n is not None and n.op_type == "Identity":
            return const(n.input[0])
        if n is not None and n.op_type == "Transpose":  # an exporter's weight.T left unfolded
            src = const(n.input[0])
            perm = [list(a.ints) for a in n.attribute if a.name == "perm"]
            return None if src is None else np.transpose(src, perm[0] if perm else None)
        return None

    ops = {n.op_type for n in g.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger",
              "MatMulNBits", "GatherBlockQuantized"}:
        raise _fail("it is quantized; map the fp32 pruned model (before `edgecompress quantize`)")
    users = consumers(g)
    layers: list[_Layer] = []
    by_output: dict[str, _Layer] = {}
    for n in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            w = const(n.input[1])
            if w is None:
                raise _fail(f"Conv {n.name!r} has no constant weight")
            b = _bias(const(n.input[2]) if len(n.input) > 2 and n.input[2] else None, w.shape[0], n.name)
            lay = _Layer(n.name, "conv", w, b, int(attrs.get("group", 1)))
        elif n.op_type == "Gemm" and (w := const(n.input[1])) is not None:
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise _fail(f"Gemm {n.name!r} has transA/alpha/beta that no nn.Linear has")
            w = w if attrs.get("transB", 0) else w.T
            b = _bias(const(n.input[2]) if len(n.input) > 2 and n.input[2] else None, w.shape[0], n.name)
            lay = _Layer(n.name, "linear", w, b)
        elif n.op_type == "MatMul" and (w := const(n.input[1])) is not None and w.ndim == 2:
            b, out = None, n.output[0]
            nxt = users.get(out, [])
            if len(nxt) == 1 and nxt[0].op_type == "Add":
                other = [i for i in nxt[0].input if i != out]
                cb = const(other[0]) if other else None
                if cb is not None and cb.size == w.shape[1] and cb.shape[-1] == w.shape[1]:
                    b, out = cb.reshape(-1), nxt[0].output[0]
            lay = _Layer(n.name, "linear", w.T, b)
            by_output[out] = lay
            layers.append(lay)
            continue
        elif n.op_type == "BatchNormalization" and n.input[0] in by_output:
            prev = by_output[n.input[0]]
            found = [const(i) for i in n.input[1:5]]
            vals = tuple(v for v in found if v is not None)
            if len(vals) == len(found) and len(users.get(n.input[0], [])) == 1:
                prev.bn, prev.bn_eps = vals, float(attrs.get("epsilon", 1e-5))
            continue
        else:
            continue
        by_output[n.output[0]] = lay
        layers.append(lay)
    return layers, model


def _bias(b: np.ndarray | None, out: int, node: str) -> np.ndarray | None:
    """A bias as a vector of `out` values (a [1, out] or broadcast scalar C of Gemm included)."""
    if b is None:
        return None
    if b.size == out:
        return b.reshape(out)
    if b.size == 1:
        return np.full(out, float(b.reshape(-1)[0]), np.float32)
    raise _fail(f"node {node!r} has a bias of shape {list(b.shape)} for {out} outputs")


def _torch_layers(teacher: nn.Module, example: dict[str, torch.Tensor]) -> list[tuple[str, nn.Module, str | None]]:
    """(name, Conv/Linear module, name of a BatchNorm applied right after it) in execution order."""
    gm = trace_teacher(teacher, example, "mapping a pruned model back")
    mods = dict(teacher.named_modules())
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), (nn.Conv1d, nn.Conv2d, nn.Linear)):
            continue
        bn = None
        if len(node.users) == 1:
            (u,) = node.users
            if u.op == "call_module" and isinstance(mods.get(u.target), (nn.BatchNorm1d, nn.BatchNorm2d)):
                bn = u.target
        out.append((node.target, mods[node.target], bn))
    return out


def _check_pair(name: str, m: nn.Module, lay: _Layer) -> None:
    if isinstance(m, nn.Linear) != (lay.op == "linear"):
        raise _fail(f"layer order differs: teacher module {name!r} is {type(m).__name__}, graph node "
                    f"{lay.node!r} is a {lay.op}")
    weight = m.weight
    if not isinstance(weight, torch.Tensor):
        raise _fail(f"teacher module {name!r} ({type(m).__name__}) has no weight tensor")
    tw = tuple(weight.shape)
    pw = lay.weight.shape
    if len(tw) != len(pw) or tw[2:] != pw[2:]:
        raise _fail(f"{name!r}: teacher weight {list(tw)} vs pruned {list(pw)} (kernel or rank differs)")
    if pw[0] > tw[0] or (not _depthwise(m) and pw[1] > tw[1]):
        raise _fail(f"{name!r}: pruned weight {list(pw)} is larger than the teacher's {list(tw)}")
    if isinstance(m, (nn.Conv1d, nn.Conv2d)) and not _depthwise(m) and m.groups != 1:
        raise _fail(f"{name!r}: grouped convolutions (groups={m.groups}) are not mapped")


def _depthwise(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _set(m: nn.Module, name: str, value: np.ndarray | torch.Tensor, buffer: bool = False) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().to(torch.float32).clone()
    else:
        t = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
    if buffer:
        setattr(m, name, t)
    else:
        setattr(m, name, nn.Parameter(t, requires_grad=getattr(m, name).requires_grad))


def pruned_student(teacher: nn.Module, path: str | Path, example: dict[str, torch.Tensor]
                   ) -> tuple[nn.Module, dict[str, Any], list[str]]:
    """The teacher's class with the pruned model's channel counts and weights; (student, plan, notes)."""
    import copy

    path = Path(path)
    layers, model = _graph_layers(path)
    teacher = teacher.eval()
    ours = _torch_layers(teacher, example)
    if len(ours) != len(layers):
        raise _fail(f"the teacher has {len(ours)} Conv/Linear layers, the pruned model {len(layers)}")
    student = copy.deepcopy(teacher)
    mods = dict(student.named_modules())
    plan: dict[str, dict[str, list[int]]] = {}
    folded: list[tuple[str, np.ndarray]] = []
    for (name, _, bn_name), lay in zip(ours, layers, strict=True):
        m = mods[name]
        _check_pair(name, m, lay)
        out_n = lay.weight.shape[0]
        in_n = None if _depthwise(m) else lay.weight.shape[1]
        entry = {"out": list(range(out_n))} | ({"in": list(range(in_n))} if in_n is not None else {})
        slice_module(m, entry["out"], entry.get("in"))
        plan[name] = entry
        _set(m, "weight", lay.weight)
        bias = lay.bias if lay.bias is not None else np.zeros(out_n, np.float32)
        if bn_name is not None:
            bn = mods[bn_name]
            slice_module(bn, entry["out"], None)
            plan[bn_name] = {"out": entry["out"]}
            if lay.bn is not None:  # the graph kept the BatchNorm
                scale, shift, mean, var = lay.bn
                if bn.affine:
                    _set(bn, "weight", scale)
                    _set(bn, "bias", shift)
                elif not (np.allclose(scale, 1) and np.allclose(shift, 0)):
                    raise _fail(f"{bn_name!r} has no affine parameters but the pruned BatchNorm scales or shifts")
                _set(bn, "running_mean", mean, buffer=True)
                _set(bn, "running_var", var, buffer=True)
                if m.bias is not None:
                    _set(m, "bias", bias)
                elif lay.bias is not None and np.any(lay.bias):
                    raise _fail(f"{name!r} has no bias but the pruned layer has one before its BatchNorm")
            else:  # folded into the conv by the exporter: rebuilt from data below
                if not bn.affine:
                    raise _fail(f"{bn_name!r} has no affine parameters to carry the folded BatchNorm")
                folded.append((bn_name, bias))
                _set(bn, "weight", np.ones(out_n, np.float32))
                _set(bn, "bias", bias)
                _set(bn, "running_mean", np.zeros(out_n, np.float32), buffer=True)
                _set(bn, "running_var", np.full(out_n, 1.0 - bn.eps, np.float32), buffer=True)
                if m.bias is not None:
                    _set(m, "bias", np.zeros(out_n, np.float32))
        elif m.bias is not None:
            _set(m, "bias", bias)
        elif lay.bias is not None and np.any(lay.bias):
            raise _fail(f"{name!r} has no bias but the pruned layer {lay.node!r} has one")
    if folded:
        _calibrate_folded(student, folded, example)
    err = _parity(student, model, example)
    notes = [f"student mapped from pruned model {path.name}: {len(plan)} modules resized; max error vs the pruned "
             f"model in ONNX Runtime {err:.2e} (relative to the output scale)"]
    if folded:
        notes.append(f"{len(folded)} BatchNorm(s) were folded into the layer before by the exporter: rebuilt with "
                     f"the statistics of {len(next(iter(example.values())))} training samples")
    return student, {"modules": plan, "source": str(path)}, notes


def _calibrate_folded(student: nn.Module, folded: list[tuple[str, np.ndarray]],
                      example: dict[str, torch.Tensor]) -> None:
    """A BatchNorm folded into its conv/linear: from the per-channel mean m and variance v of its input on real
    samples, running stats (m, v), weight sqrt(v + eps) and bias (folded bias + m). Eval mode stays exact (the
    identity plus the folded bias), and training-mode batch statistics start near the running ones, so the
    student does not lose its accuracy at the first training step."""
    mods = dict(student.named_modules())
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):
        def pre(_m: nn.Module, args: tuple) -> None:
            y = args[0].detach().double()
            dims = [d for d in range(y.dim()) if d != 1]
            stats[name] = (y.mean(dims), y.var(dims, unbiased=False))
        return pre

    handles = [mods[n].register_forward_pre_hook(hook(n)) for n, _ in folded]
    try:
        _run(student, list(example.values()))
    finally:
        for h in handles:
            h.remove()
    for name, bias in folded:
        bn = mods[name]
        mean, var = stats[name]
        _set(bn, "running_mean", mean.float(), buffer=True)
        _set(bn, "running_var", var.float(), buffer=True)
        _set(bn, "weight", torch.sqrt(var + bn.eps).float())
        _set(bn, "bias", torch.tensor(bias, dtype=torch.float64).add(mean).float())


def _run(student: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
    """The student's primary output in eval mode; a forward() that does not fit the pruned shapes is refused."""
    from .trainer import primary

    student.eval()
    with torch.no_grad():
        try:
            return primary(student(*xs))
        except Exception as exc:  # noqa: BLE001 - the teacher's forward() did not fit the new shapes
            raise _fail(f"the teacher's forward() fails with the pruned shapes: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:160]}") from None


def _parity(student: nn.Module, model: Any, example: dict[str, torch.Tensor]) -> float:
    from ..onnxgraph.runtime import make_session

    sess = make_session(model.SerializeToString(), threads=1)
    names = [i.name for i in sess.get_inputs()]
    xs = list(example.values())
    if len(names) != len(xs):
        raise _fail(f"the pruned model takes {len(names)} inputs, the teacher {len(xs)}")
    # the student runs positionally (forward() order); ORT gets them by name when the names agree
    onnx_xs = [example[n] for n in names] if set(names) == set(example) else xs
    s_out = _run(student, xs).float().numpy()
    try:
        try:
            outs = sess.run(None, {n: x.numpy() for n, x in zip(names, onnx_xs, strict=True)})
        except Exception:  # noqa: BLE001 - a model exported with batch 1: run the samples one by one
            per = [sess.run(None, {n: x[i:i + 1].numpy() for n, x in zip(names, onnx_xs, strict=True)})
                   for i in range(len(xs[0]))]
            outs = [np.concatenate([p[k] for p in per]) for k in range(len(per[0]))]
    except Exception as exc:  # noqa: BLE001 - ORT refuses the teacher's inputs
        raise _fail(f"ONNX Runtime cannot run the pruned model on the training samples: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:160]}") from None
    same = [o for o in outs if o.shape == s_out.shape]
    if not same:
        raise _fail(f"output shapes differ: student {list(s_out.shape)}, pruned model "
                    f"{[list(o.shape) for o in outs]}")
    o_out = same[0]
    err = float(np.abs(o_out - s_out).max() / max(1e-6, float(np.abs(o_out).max())))
    if not err <= PARITY_TOL:
        raise _fail(f"the mapped student differs from the pruned model by {err:.3g} of the output scale "
                    f"(> {PARITY_TOL:g}); some pruned dimension is not a Conv/Linear channel count "
                    "(attention heads?)")
    return err
