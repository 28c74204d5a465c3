"""Per-op propagation rules for the dependency analysis (see groups.py for the model).

Each rule takes the analyzer, the node and its input layouts, records parameter slices / unions / blocks,
and returns one layout per output (None: channels that are fixed, i.e. not prunable from here).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from .graphutil import attr, const_array, is_const, rank, static_shape
from .irchecks import known_dims, node_name, value_name
from .spaces import CLAIMED, Analyzer, Fix, Layout, MacDeps

Rule = Callable[[Analyzer, ir.Node, list], list]
RULES: dict[str, Rule] = {}

UNARY = {"Relu", "Clip", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Selu", "Celu",
         "Gelu", "Erf", "Softplus", "Softsign", "Identity", "Dropout", "Neg", "Abs", "Sqrt", "Exp", "Log",
         "Reciprocal", "Mish", "Cast", "Floor", "Ceil", "Round", "Sin", "Cos", "ThresholdedRelu", "Shrink"}
SPATIAL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum", "Mean", "PRelu"}
REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceProd",
          "ReduceSumSquare", "ReduceLogSumExp"}


def rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(f: Rule) -> Rule:
        for op in ops:
            RULES[op] = f
        return f
    return deco


def tracked(lay) -> bool:
    return isinstance(lay, Layout)


def apply_rule(a: Analyzer, node: ir.Node, lays: list) -> list:
    lays = [None if lay == CLAIMED and node.name not in a.claimed_in else lay for lay in lays]
    if node.domain not in ("", "ai.onnx"):
        return _unknown(a, node, lays, f"custom op {node.domain}.{node.op_type}")
    f = RULES.get(node.op_type)
    if f is None:
        if node.op_type in UNARY:
            f = _unary
        elif node.op_type in SPATIAL:
            f = _spatial
        elif node.op_type in BINARY:
            f = _binary
        elif node.op_type in REDUCE:
            f = _reduce
    if f is None:
        return _unknown(a, node, lays, f"op {node.op_type}")
    return f(a, node, lays)


def _unknown(a: Analyzer, node: ir.Node, lays: list, what: str) -> list:
    for lay in lays:
        a.block(lay, f"consumed by {what} (node {node.name}), which channel pruning does not understand")
    return [None] * len(node.outputs)


def _out_rank(node: ir.Node, i: int = 0) -> int | None:
    return rank(node.outputs[i]) if i < len(node.outputs) else None


def _ints(v: ir.Value | None) -> list[int] | None:
    arr = const_array(v)
    return None if arr is None else [int(x) for x in np.asarray(arr).reshape(-1)]


def _int_arg(node: ir.Node, i: int, name: str | None = None) -> list[int] | None:
    """The ints of optional input `i` when given, else of attribute `name` (older opsets), else None."""
    if len(node.inputs) > i and node.inputs[i] is not None:
        return _ints(node.inputs[i])
    return None if name is None else attr(node, name)


def _first(node: ir.Node, lay) -> list:
    """`lay` for the first output, fixed channels for the others (BatchNorm/Dropout/... extra outputs)."""
    return [lay] + [None] * (len(node.outputs) - 1)


# compute ops --------------------------------------------------------------------------------------------
@rule("Conv")
def _conv(a: Analyzer, node: ir.Node, lays: list) -> list:
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    W = const_array(w)
    L = lays[0]
    if W is None or (b is not None and not is_const(b)):
        a.block(L, f"Conv {node.name} has non-constant weights")
        return [None]
    name = node_name(node)
    group = int(attr(node, "group", 1))
    cout = int(W.shape[0])
    r = rank(node.outputs[0]) or W.ndim
    if group == 1:
        in_segs: tuple = ()
        if tracked(L):
            if L.axis != 1 or L.expand != 1:
                a.block(L, f"Conv {node.name} reads the channels on an unexpected axis")
            else:
                a.add_slice(L, w, 1, "weight_in", name)
                a.add_use(L, name, value_name(x, f"input of Conv {name}"))
                in_segs = L.segs
        s = a.new_space(cout, name)
        out = Layout(1, r, ((s, cout),))
        a.add_slice(out, w, 0, "weight_out", name)
        a.add_slice(out, b, 0, "bias", name)
        a.macs.append(MacDeps(name, in_segs, s))
        return [out]
    if tracked(L) and L.axis == 1 and L.expand == 1 and group == L.channels == cout and W.shape[1] == 1:
        a.add_slice(L, w, 0, "dw_weight", name)
        a.add_slice(L, b, 0, "bias", name)
        a.fixes.append(Fix("dw_group", name, ()))
        a.macs.append(MacDeps(name, L.segs, None))
        return [L]
    a.block(L, f"grouped Conv {node.name} (group={group}) is not depthwise with multiplier 1")
    return [None]


def _weight_matmul(a: Analyzer, node: ir.Node, L, x: ir.Value | None, w: ir.Value, in_axis: int, out_axis: int,
                   bias: ir.Value | None, out_rank: int) -> list:
    W = const_array(w)
    name = node_name(node)
    if W is None:
        raise ValueError(f"{node.op_type} {name}: weight {w.name!r} is not a constant")
    in_segs: tuple = ()
    if tracked(L):
        if L.axis != L.rank - 1:
            a.block(L, f"{node.op_type} {name} reads the channels on axis {L.axis} (not the inner dim)")
        else:
            a.add_slice(L, w, in_axis, "weight_in", name)
            a.add_use(L, name, value_name(x, f"input of {node.op_type} {name}"))
            in_segs = L.segs
    n = int(W.shape[out_axis])
    if name in a.claimed_out:  # a Q/K/V projection: its output belongs to the heads space
        hs = a.head_space[name]
        a.macs.append(MacDeps(name, in_segs, hs))
        return [CLAIMED]
    if name in a.claimed_in:
        hs = a.head_space[name]
        in_segs = ((hs, a.spaces[hs].size),)
    s = a.new_space(n, name, kind="units" if out_rank <= 3 else "channels")
    out = Layout(out_rank - 1, out_rank, ((s, n),))
    a.add_slice(out, w, out_axis, "weight_out", name)
    if bias is not None:
        B = const_array(bias)
        if B is None:
            a.block(out, f"Gemm {name} has a non-constant bias")
        elif B.ndim >= 1 and B.shape[-1] == n and n > 1:
            a.add_slice(out, bias, B.ndim - 1, "bias", name)
    a.macs.append(MacDeps(name, in_segs, s))
    return [out]


@rule("Gemm")
def _gemm(a: Analyzer, node: ir.Node, lays: list) -> list:
    x, w = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    W = const_array(w)
    if int(attr(node, "transA", 0)) or w is None or W is None or W.ndim != 2:
        a.block(lays[0], f"Gemm {node.name} has transA or non-constant weights")
        return [None]
    tb = int(attr(node, "transB", 0))
    return _weight_matmul(a, node, lays[0], x, w, 1 if tb else 0, 0 if tb else 1, c, 2)


@rule("MatMul")
def _matmul(a: Analyzer, node: ir.Node, lays: list) -> list:
    x, w = node.inputs[0], node.inputs[1]
    W = const_array(w)
    r = _out_rank(node)
    if w is None or W is None or W.ndim != 2 or is_const(x) or r is None:
        for lay in lays:
            a.block(lay, f"MatMul {node.name} multiplies two activations (not a recognised attention block)")
        return [None]
    return _weight_matmul(a, node, lays[0], x, w, 0, 1, None, r)


@rule("BatchNormalization", "InstanceNormalization")
def _batchnorm(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None] * len(node.outputs)
    if L.axis != 1 or L.expand != 1 or not all(is_const(v) for v in node.inputs[1:] if v is not None):
        a.block(L, f"{node.op_type} {node.name} on an unexpected axis or with non-constant parameters")
        return [None] * len(node.outputs)
    kinds = ("bn_scale", "bn_bias", "bn_mean", "bn_var")
    for v, kind in zip(node.inputs[1:], kinds, strict=False):
        a.add_slice(L, v, 0, kind, node_name(node))
    if node.op_type == "BatchNormalization":
        for s, _ in L.segs:
            a.spaces[s].bn_nodes.append(node.name)
    return _first(node, L)


# elementwise --------------------------------------------------------------------------------------------
def _unary(a: Analyzer, node: ir.Node, lays: list) -> list:
    for lay in lays[1:]:
        a.block(lay, f"{node.op_type} {node.name} uses the channels as a parameter")
    return _first(node, lays[0])


def _spatial(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if tracked(L) and L.axis != 1:
        a.block(L, f"{node.op_type} {node.name} pools over the channel axis")
        return [None] * len(node.outputs)
    return _first(node, L)


@rule("Pad")
def _pad(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    pads = _int_arg(node, 1, "pads")
    axes = _ints(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else list(range(L.rank))
    if axes is None:
        a.block(L, f"Pad {node.name} has non-constant axes")
        return [None]
    if pads is None or len(pads) != 2 * len(axes):
        a.block(L, f"Pad {node.name} has non-constant pads")
        return [None]
    for i, ax in enumerate(axes):
        if ax % L.rank == L.axis and (pads[i] or pads[i + len(axes)]):
            a.block(L, f"Pad {node.name} pads the channel axis")
            return [None]
    return [L]


def _binary(a: Analyzer, node: ir.Node, lays: list) -> list:
    r = _out_rank(node)
    ins = [(v, lay) for v, lay in zip(node.inputs, lays, strict=False) if v is not None]
    trk = [(v, lay) for v, lay in ins if tracked(lay)]
    if not trk:
        return [None]
    if r is None:
        for _, lay in trk:
            a.block(lay, f"{node.op_type} {node.name}: output rank unknown")
        return [None]
    ref = trk[0][1]
    ref = ref.moved(ref.axis + r - ref.rank, r)
    ok = True
    for _, lay in trk[1:]:
        other = lay.moved(lay.axis + r - lay.rank, r)
        same = (other.axis == ref.axis and other.expand == ref.expand and len(other.segs) == len(ref.segs)
                and all(n1 == n2 for (_, n1), (_, n2) in zip(other.segs, ref.segs, strict=False)))
        if same:
            for (s1, _), (s2, _) in zip(ref.segs, other.segs, strict=False):
                a.union(s1, s2)
        else:
            ok = False
    total = ref.channels * ref.expand
    why = "combines the channels with a tensor of a different channel layout"
    for v, lay in ins:
        if tracked(lay):
            continue
        shp = static_shape(v)
        if shp is None:
            ok = False
            continue
        ax = ref.axis - (r - len(shp))
        dim = shp[ax] if 0 <= ax < len(shp) else 1
        if dim == 1:
            continue
        if is_const(v) and dim == total:
            a.add_slice(ref, v, ax, "const", node_name(node))
        else:
            ok = False
            if not is_const(v):
                why = f"combines the channels with {v.name!r}, whose channels cannot be pruned"
    if not ok:
        for _, lay in trk:
            a.block(lay, f"{node.op_type} {node.name} {why}")
        return [None]
    return [ref]


# layout ops ---------------------------------------------------------------------------------------------
@rule("Concat")
def _concat(a: Analyzer, node: ir.Node, lays: list) -> list:
    r = _out_rank(node)
    trk = [lay for lay in lays if tracked(lay)]
    if not trk:
        return [None]
    axis = int(attr(node, "axis", 0)) % (r or 1)
    if r is None or any(lay.rank != r for lay in trk):
        for lay in trk:
            a.block(lay, f"Concat {node.name}: ranks unknown")
        return [None]
    if all(lay.axis == axis for lay in trk) and len({lay.expand for lay in trk}) == 1:
        segs: list = []
        for v, lay in zip(node.inputs, lays, strict=False):
            if tracked(lay):
                segs.extend(lay.segs)
                continue
            shp = static_shape(v)
            if shp is None or shp[axis] is None:
                for t in trk:
                    a.block(t, f"Concat {node.name} joins an input of unknown size")
                return [None]
            fixed = a.new_space(shp[axis] // trk[0].expand, node_name(node))
            a.spaces[fixed].reasons.append(f"channels of a fixed tensor concatenated by {node.name}")
            segs.append((fixed, shp[axis] // trk[0].expand))
        return [Layout(axis, r, tuple(segs), trk[0].expand)]
    return _same_layout(a, node, lays, "concatenates along another axis")


def _same_layout(a: Analyzer, node: ir.Node, lays: list, what: str) -> list:
    trk = [lay for lay in lays if tracked(lay)]
    if len(trk) == len([v for v in node.inputs if v is not None]) and all(t == trk[0] for t in trk):
        return [trk[0]] * len(node.outputs)
    for t in trk:
        a.block(t, f"{node.op_type} {node.name} {what} with inputs of different layouts")
    return [None] * len(node.outputs)


def _cut(L: Layout, start: int, end: int) -> tuple | None:
    """Segments of L covering channel indices [start, end) (in tensor indices), or None if not aligned."""
    out, pos = [], 0
    for s, n in L.segs:
        lo, hi = pos, pos + n * L.expand
        pos = hi
        if hi <= start or lo >= end:
            continue
        if lo < start or hi > end:
            return None
        out.append((s, n))
    return tuple(out)


@rule("Split")
def _split(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    k = len(node.outputs)
    if not tracked(L):
        return [None] * k
    axis = int(attr(node, "axis", 0)) % L.rank
    if axis != L.axis:
        return [L] * k
    sizes = _int_arg(node, 1, "split")
    total = L.channels * L.expand
    if sizes is None:
        sizes = [-(-total // k)] * (k - 1) + [total - (k - 1) * -(-total // k)]
    outs, pos = [], 0
    for sz in sizes:
        segs = _cut(L, pos, pos + sz)
        if segs is None:
            a.block(L, f"Split {node.name} cuts across a group of channels")
            return [None] * k
        outs.append(Layout(axis, L.rank, segs, L.expand))
        pos += sz
    a.fixes.append(Fix("split_sizes", node_name(node), tuple(o.segs for o in outs) + (L.expand,)))
    return outs


@rule("Slice")
def _slice(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    starts, ends = _ints(node.inputs[1]), _ints(node.inputs[2])
    axes, steps = _int_arg(node, 3), _int_arg(node, 4)
    if starts is None or ends is None:
        a.block(L, f"Slice {node.name} has non-constant bounds")
        return [None]
    axes = [x % L.rank for x in (axes or list(range(len(starts))))]
    if L.axis not in axes:
        return [L]
    i = axes.index(L.axis)
    total = L.channels * L.expand
    lo, hi = max(0, min(starts[i] if starts[i] >= 0 else total + starts[i], total)), ends[i]
    hi = max(0, min(hi if hi >= 0 else total + hi, total))
    segs = _cut(L, lo, hi) if (steps is None or steps[i] == 1) else None
    if not segs:
        a.block(L, f"Slice {node.name} cuts across a group of channels")
        return [None]
    before = _cut(L, 0, lo) or ()
    a.fixes.append(Fix("slice_bounds", node_name(node), (i, before, segs, L.expand)))
    return [Layout(L.axis, L.rank, segs, L.expand)]


@rule("Flatten")
def _flatten(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    fa = int(attr(node, "axis", 1)) % L.rank
    shp = static_shape(node.inputs[0])
    tail = known_dims(shp[L.axis + 1:]) if shp else None
    if fa != L.axis or tail is None:
        a.block(L, f"Flatten {node.name} mixes the channels with other dims")
        return [None]
    return [Layout(1, 2, L.segs, L.expand * int(np.prod(tail, dtype=np.int64)))]


@rule("Reshape")
def _reshape(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    shp_in, shp_out = static_shape(node.inputs[0]), static_shape(node.outputs[0])
    spec = _ints(node.inputs[1])
    if shp_in is None or shp_out is None or spec is None or (int(attr(node, "allowzero", 0)) and 0 in spec):
        a.block(L, f"Reshape {node.name}: shape not constant or not inferred")
        return [None]
    ax = L.axis

    def prefix_ok(k: int) -> bool:
        return len(shp_out) > k - 1 and all(
            (i < len(spec) and spec[i] == 0) or (shp_in[i] is not None and shp_in[i] == shp_out[i])
            for i in range(k))

    tail_in = known_dims(shp_in[ax + 1:])  # None: a dim after the channel axis is unknown
    tail_out = known_dims(shp_out[ax + 1:]) if len(shp_out) > ax else None
    if len(shp_out) > ax and prefix_ok(ax) and shp_out[ax] == shp_in[ax] and tail_in is not None \
            and tail_out is not None and np.prod(tail_in, dtype=np.int64) == np.prod(tail_out, dtype=np.int64):
        a.fixes.append(Fix("reshape_tail", node_name(node), (ax, tuple(int(d) for d in tail_out))))
        return [Layout(ax, len(shp_out), L.segs, L.expand)]
    if len(shp_out) == ax + 1 and prefix_ok(ax) and tail_in is not None:
        a.fixes.append(Fix("reshape_tail", node_name(node), (ax, ())))
        return [Layout(ax, ax + 1, L.segs, L.expand * int(np.prod(tail_in, dtype=np.int64)))]
    a.block(L, f"Reshape {node.name} splits or mixes the channel axis ({list(shp_in)} -> {list(shp_out)})")
    return [None]


@rule("Transpose")
def _transpose(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    perm = attr(node, "perm") or list(range(L.rank))[::-1]
    return [L.moved(list(perm).index(L.axis), L.rank)]


@rule("Squeeze", "Unsqueeze")
def _squeeze(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    axes = _int_arg(node, 1, "axes")
    r_out = _out_rank(node)
    if r_out is None or axes is None:
        a.block(L, f"{node.op_type} {node.name}: axes unknown")
        return [None]
    if node.op_type == "Squeeze":
        axes = [x % L.rank for x in axes]
        if L.axis in axes:
            a.block(L, f"Squeeze {node.name} removes the channel axis")
            return [None]
        return [L.moved(L.axis - sum(1 for x in axes if x < L.axis), r_out)]
    axes = sorted(x % r_out for x in axes)
    kept = [i for i in range(r_out) if i not in axes]
    return [L.moved(kept[L.axis], r_out)]


def _reduce(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if not tracked(L):
        return [None]
    axes = [x % L.rank for x in _int_arg(node, 1, "axes") or ()]
    if not axes or L.axis in axes:
        a.block(L, f"{node.op_type} {node.name} reduces over the channel axis")
        return [None]
    if int(attr(node, "keepdims", 1)):
        return [L]
    return [L.moved(L.axis - sum(1 for x in axes if x < L.axis), L.rank - len(axes))]


@rule("Softmax", "LogSoftmax", "Hardmax")
def _softmax(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    if tracked(L) and int(attr(node, "axis", -1)) % L.rank == L.axis:
        a.block(L, f"{node.op_type} {node.name} normalizes across the channels")
        return [None]
    return [L]


@rule("LayerNormalization")
def _layernorm(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    for lay in lays[1:]:
        a.block(lay, f"LayerNormalization {node.name} uses the channels as a parameter")
    if tracked(L) and L.axis >= int(attr(node, "axis", -1)) % L.rank:
        a.block(L, f"LayerNormalization {node.name} normalizes across the channels")
        return [None] * len(node.outputs)
    return _first(node, L)


@rule("Gather")
def _gather(a: Analyzer, node: ir.Node, lays: list) -> list:
    L = lays[0]
    a.block(lays[1] if len(lays) > 1 else None, f"Gather {node.name} uses the channels as indices")
    if not tracked(L):
        return [None]
    axis = int(attr(node, "axis", 0)) % L.rank
    idx = const_array(node.inputs[1])
    if axis == L.axis or idx is None:
        a.block(L, f"Gather {node.name} selects channels")
        return [None]
    new_axis = L.axis if L.axis < axis else L.axis - 1 + idx.ndim
    return [L.moved(new_axis, L.rank - 1 + idx.ndim)]


@rule("Constant", "Shape", "Size")
def _readonly(a: Analyzer, node: ir.Node, lays: list) -> list:
    for lay in lays:
        a.block(lay, f"{node.op_type} {node.name} reads the tensor's shape (the channel count is used as data)")
    return [None] * len(node.outputs)
