"""Students derived from the teacher, initialised with the teacher's weights.

* width=F: structured channel selection. The teacher is traced with torch.fx; channels are grouped into
  dependency groups (a conv/linear output, everything that must keep the same channels: BatchNorm,
  depthwise convs, activations, pooling, residual adds that merge groups, the next conv/linear input and a
  flatten into a linear head). Groups that reach the model output, a reshape or an op we do not understand stay
  whole (conservative). Per group, the F most important channels are kept (L1 norm of the producing filters,
  each producer normalised by its largest filter, plus |gamma| of BatchNorms in the group) and their weights
  copied from the teacher. The teacher's own class is kept, so its forward() code is reused unchanged.
* depth=K: in every homogeneous layer stack (nn.Sequential / nn.ModuleList of >= 2 blocks of one class with equal
  parameter shapes) keep blocks 0, K, 2K, ... with their teacher weights (as DistilBERT kept one layer in two).

Both return (student, plan); `rebuild_derived(teacher, derived)` replays a plan stored in a checkpoint.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..errors import UnsupportedError

_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
                 nn.LeakyReLU, nn.ELU, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)
_PASS_FUNCS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6, torch.nn.functional.gelu,
               torch.nn.functional.silu, torch.sigmoid, torch.tanh, torch.nn.functional.hardswish,
               torch.nn.functional.leaky_relu, torch.nn.functional.dropout, torch.nn.functional.max_pool2d,
               torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_avg_pool2d,
               torch.nn.functional.adaptive_max_pool2d}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
_MERGE = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul, operator.iadd}


@dataclass
class _Group:
    producers: list[str] = field(default_factory=list)           # conv/linear whose output channels form it
    members: list[str] = field(default_factory=list)             # BN / depthwise conv / LayerNorm sliced in place
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (conv/linear, spatial size after flatten)
    size: int = 0
    fixed: bool = False


class _UF:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        while self.parent.setdefault(a, a) != a:
            a = self.parent[a]
        return a



def trace_teacher(model: nn.Module, example: dict[str, torch.Tensor], purpose: str = "width reduction"
                  ) -> fx.GraphModule:
    """torch.fx graph of `model` with shapes propagated on one sample of `example`."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:
        raise UnsupportedError(f"{purpose} needs a torch.fx-traceable teacher; tracing failed: "
                               f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}",
                               hint="give --student SPEC instead") from None
    from torch.fx.passes.shape_prop import ShapeProp

    args = [v[:1] for v in example.values()]
    with torch.no_grad():
        ShapeProp(gm).propagate(*args)
    return gm


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _analyse(gm: fx.GraphModule) -> dict[int, _Group]:
    mods = dict(gm.named_modules())
    uf = _UF()
    groups: dict[int, _Group] = {}
    space: dict[fx.Node, tuple[int, int] | None] = {}   # node -> (group id, channel axis) ; flatten: axis = -S

    def new(prod: str, size: int) -> int:
        gid = len(groups)
        groups[gid] = _Group(producers=[prod], size=size)
        return gid

    def fix(sp: tuple[int, int] | None) -> None:
        if sp is not None:
            groups[uf.find(sp[0])].fixed = True

    def grp(sp: tuple[int, int]) -> _Group:
        return groups[uf.find(sp[0])]

    for node in gm.graph.nodes:
        ins = [a for a in node.all_input_nodes]
        in_sp = [space.get(a) for a in ins]
        first = in_sp[0] if in_sp else None
        shp = _shape(node)
        out: tuple[int, int] | None = None
        if node.op == "placeholder" or node.op == "get_attr":
            out = None
        elif node.op == "output":
            for sp in in_sp:
                fix(sp)
        elif node.op == "call_module":
            m = mods[node.target]
            is_conv = isinstance(m, (nn.Conv1d, nn.Conv2d))
            if is_conv and m.groups == 1:
                if first is not None:
                    if first[1] == 1:
                        grp(first).consumers.append((node.target, 1))
                    else:
                        fix(first)
                out = (new(node.target, m.out_channels), 1)
            elif is_conv and m.groups == m.in_channels == m.out_channels and first is not None and first[1] == 1:
                grp(first).members.append(node.target)
                out = first
            elif isinstance(m, nn.Linear):
                nd = len(shp) if shp else 2
                if first is not None:
                    if first[1] < 0 or (first[1] == nd - 1):
                        grp(first).consumers.append((node.target, -first[1] if first[1] < 0 else 1))
                    else:
                        fix(first)
                out = (new(node.target, m.out_features), nd - 1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and first is not None and first[1] == 1:
                grp(first).members.append(node.target)
                out = first
            elif isinstance(m, nn.LayerNorm) and first is not None and shp and first[1] == len(shp) - 1 \
                    and len(m.normalized_shape) == 1:
                grp(first).members.append(node.target)
                out = first
            elif isinstance(m, _PASS_MODULES):
                out = first if first is None or first[1] >= 0 else None
                if first is not None and first[1] < 0:
                    fix(first)
            elif isinstance(m, nn.Flatten) and first is not None and first[1] == 1 and m.start_dim == 1:
                in_shape = _shape(ins[0])
                spatial = int(torch.tensor(in_shape[2:]).prod()) if in_shape and len(in_shape) > 2 else 1
                out = (first[0], -spatial)
            else:
                for sp in in_sp:
                    fix(sp)
        elif node.op in ("call_function", "call_method"):
            tgt = node.target
            if (node.op == "call_function" and tgt in _PASS_FUNCS) or (node.op == "call_method" and tgt in _PASS_METHODS):
                out = first if first is None or first[1] >= 0 else None
                if first is not None and first[1] < 0:
                    fix(first)
                for sp in in_sp[1:]:
                    fix(sp)
            elif (tgt in (torch.flatten,) or (node.op == "call_method" and tgt == "flatten")) and first is not None \
                    and first[1] == 1 and _flatten_start(node) == 1:
                in_shape = _shape(ins[0])
                spatial = int(torch.tensor(in_shape[2:]).prod()) if in_shape and len(in_shape) > 2 else 1
                out = (first[0], -spatial)
            elif node.op == "call_function" and tgt in _MERGE:
                tensors = [a for a in node.args if isinstance(a, fx.Node)]
                sps = [space.get(a) for a in tensors]
                sa = sps[0] if sps else None
                sb = sps[1] if len(sps) > 1 else None
                if len(tensors) == 2 and sa is not None and sb is not None and sa[1] == sb[1] >= 0 \
                        and _shape(tensors[0]) == _shape(tensors[1]):
                    ra, rb = uf.find(sa[0]), uf.find(sb[0])
                    if ra != rb:
                        uf.parent[rb] = ra
                        g, other = groups[ra], groups[rb]
                        g.producers += other.producers
                        g.members += other.members
                        g.consumers += other.consumers
                        g.fixed = g.fixed or other.fixed
                    out = (ra, sa[1])
                elif len(tensors) == 1 and sa is not None and sa[1] >= 0:
                    out = sa  # tensor op scalar
                else:
                    for sp in sps:
                        fix(sp)
            else:
                for sp in in_sp:
                    fix(sp)
        if out is not None and out[1] >= 0:
            out = (uf.find(out[0]), out[1])
        space[node] = out
    return {gid: g for gid, g in groups.items() if uf.find(gid) == gid}


def _flatten_start(node: fx.Node) -> int:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    if not isinstance(start, int):
        raise UnsupportedError(f"width reduction: flatten at {node.name!r} has a start_dim computed at run time "
                               f"({start!r}); only a constant start_dim is supported")
    return start


def _importance(model: nn.Module, g: _Group) -> torch.Tensor:
    mods = dict(model.named_modules())
    score = torch.zeros(g.size)
    for name in g.producers:
        w = mods[name].weight.detach().float()
        s = w.abs().flatten(1).sum(1)
        score += s / s.max().clamp_min(1e-12)
    for name in g.members:
        m = mods[name]
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and getattr(m, "weight", None) is not None:
            s = m.weight.detach().float().abs()
            score += s / s.max().clamp_min(1e-12)
    return score


def width_plan(teacher: nn.Module, ratio: float, example: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Which channels of which module to keep: {"modules": {name: {"out": [...], "in": [...]}}}."""
    gm = trace_teacher(teacher, example)
    groups = _analyse(gm)
    plan: dict[str, dict[str, list[int]]] = {}
    pruned = 0
    for g in groups.values():
        if g.fixed or g.size < 2 or not g.producers:
            continue
        keep_n = max(1, int(round(g.size * ratio)))
        if keep_n >= g.size:
            continue
        keep = torch.sort(torch.topk(_importance(teacher, g), keep_n).indices).values.tolist()
        pruned += 1
        for name in g.producers:
            plan.setdefault(name, {})["out"] = keep
        for name in g.members:
            plan.setdefault(name, {})["out"] = keep
        for name, spatial in g.consumers:
            idx = [c * spatial + s for c in keep for s in range(spatial)]
            plan.setdefault(name, {})["in"] = idx
    if not pruned:
        raise UnsupportedError("width reduction found no channel group it can shrink safely in the teacher "
                               "(every group reaches the output, a reshape or an unknown op)",
                               hint="give --student SPEC instead")
    return {"modules": plan}


def slice_module(m: nn.Module, out_idx: list[int] | None, in_idx: list[int] | None) -> None:
    def sl(t: torch.Tensor | None, dim: int, idx: list[int] | None) -> torch.Tensor | None:
        if t is None or idx is None:
            return t
        return t.detach().index_select(dim, torch.tensor(idx, dtype=torch.long)).clone()

    def setp(name: str, t: torch.Tensor | None, buffer: bool = False) -> None:
        if t is None:
            return
        if buffer:
            setattr(m, name, t)
        else:
            setattr(m, name, nn.Parameter(t, requires_grad=getattr(m, name).requires_grad))

    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        w = sl(m.weight, 0, out_idx)
        if not depthwise:
            w = sl(w, 1, in_idx)
        setp("weight", w)
        setp("bias", sl(m.bias, 0, out_idx))
        if out_idx is not None:
            m.out_channels = len(out_idx)
            if depthwise:
                m.in_channels = m.groups = len(out_idx)
        if in_idx is not None and not depthwise:
            m.in_channels = len(in_idx)
    elif isinstance(m, nn.Linear):
        setp("weight", sl(sl(m.weight, 0, out_idx), 1, in_idx))
        setp("bias", sl(m.bias, 0, out_idx))
        if out_idx is not None:
            m.out_features = len(out_idx)
        if in_idx is not None:
            m.in_features = len(in_idx)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        setp("weight", sl(m.weight, 0, out_idx))
        setp("bias", sl(m.bias, 0, out_idx))
        setp("running_mean", sl(m.running_mean, 0, out_idx), buffer=True)
        setp("running_var", sl(m.running_var, 0, out_idx), buffer=True)
        m.num_features = len(out_idx) if out_idx is not None else m.num_features
    elif isinstance(m, nn.LayerNorm):
        setp("weight", sl(m.weight, 0, out_idx))
        setp("bias", sl(m.bias, 0, out_idx))
        if out_idx is not None:
            m.normalized_shape = (len(out_idx),)
    else:
        raise UnsupportedError(f"cannot slice module of type {type(m).__name__}")


def apply_width_plan(teacher: nn.Module, plan: dict[str, Any]) -> nn.Module:
    student = copy.deepcopy(teacher)
    mods = dict(student.named_modules())
    for name, sl in plan["modules"].items():
        if name not in mods:
            raise UnsupportedError(f"width plan names module {name!r} that the teacher does not have")
        slice_module(mods[name], sl.get("out"), sl.get("in"))
    return student


def _stacks(model: nn.Module) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) >= 2:
            kids = list(m)
            if len({type(k) for k in kids}) == 1 and sum(1 for _ in kids[0].parameters()) > 0:
                shapes = [[tuple(p.shape) for p in k.parameters()] for k in kids]
                if all(s == shapes[0] for s in shapes):
                    found[name] = len(kids)
    return found


def depth_plan(teacher: nn.Module, k: int) -> dict[str, Any]:
    stacks = _stacks(teacher)
    stacks = {n: c for n, c in stacks.items() if not any(n.startswith(o + ".") for o in stacks if o != n)}
    plan = {name: list(range(0, count, k)) for name, count in stacks.items() if count > 1}
    plan = {name: keep for name, keep in plan.items() if len(keep) < stacks[name]}
    if not plan:
        raise UnsupportedError(f"depth reduction found no layer stack (nn.Sequential/nn.ModuleList of >= 2 "
                               f"identical blocks) to thin with k={k}", hint="give --student SPEC or use width=F")
    return {"stacks": plan}


def apply_depth_plan(teacher: nn.Module, plan: dict[str, Any]) -> nn.Module:
    student = copy.deepcopy(teacher)
    for name, keep in plan["stacks"].items():
        parent_name, _, attr = name.rpartition(".")
        parent = student.get_submodule(parent_name) if parent_name else student
        old = getattr(parent, attr)
        kids = [old[i] for i in keep]
        setattr(parent, attr, type(old)(*kids) if isinstance(old, nn.Sequential) else nn.ModuleList(kids))
    return student


def derive_student(teacher: nn.Module, kind: str, value: float,
                   example: dict[str, torch.Tensor]) -> tuple[nn.Module, dict[str, Any]]:
    teacher = teacher.eval()
    if kind == "width":
        plan = width_plan(teacher, value, example)
        return apply_width_plan(teacher, plan), plan
    plan = depth_plan(teacher, int(value))
    return apply_depth_plan(teacher, plan), plan


def rebuild_derived(teacher: nn.Module, derived: dict[str, Any]) -> nn.Module:
    if derived["kind"] in ("width", "pruned"):  # a pruned-model student keeps index ranges in the same form
        return apply_width_plan(teacher, derived["plan"])
    return apply_depth_plan(teacher, derived["plan"])
