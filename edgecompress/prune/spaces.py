"""The dependency analysis' data model: spaces, layouts, slices, groups, and the `Analyzer` state the rules edit.

See groups.py for what these mean; the rules (rules.py, attention.py) import this module and groups.py runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

CLAIMED = "claimed"  # a tensor owned by a matched attention block (handled as whole heads)


def segment_indices(offset: int, expand: int, channels: np.ndarray) -> np.ndarray:
    """Tensor indices of group channels in a segment at `offset` where each channel spans `expand` indices."""
    channels = np.asarray(channels, dtype=np.int64)
    return (offset + channels[:, None] * expand + np.arange(expand)[None, :]).reshape(-1)


@dataclass(frozen=True)
class Slice:
    """A parameter tensor edited when the group's channels are removed: indices along `axis`,
    channel k of the segment covering [offset + k*expand, offset + (k+1)*expand)."""

    value: str
    axis: int
    offset: int
    expand: int
    kind: str  # weight_out | weight_in | dw_weight | bias | bn_scale | bn_bias | bn_mean | bn_var | const
    node: str

    def tensor_indices(self, channels: np.ndarray) -> np.ndarray:
        """Indices along `axis` covered by the given group channels, in channel order."""
        return segment_indices(self.offset, self.expand, channels)


@dataclass(frozen=True)
class Use:
    """A tensor carrying the group's channels into a consumer (for activation statistics / reconstruction)."""

    node: str
    tensor: str
    axis: int
    offset: int
    expand: int

    def tensor_indices(self, channels: np.ndarray) -> np.ndarray:
        """Indices along `axis` of `tensor` carrying the given group channels."""
        return segment_indices(self.offset, self.expand, channels)


@dataclass
class Space:
    id: int
    size: int
    origin: str
    kind: str = "channels"  # channels | units | heads
    unit: int = 1  # tensor indices per channel (head width for heads)
    slices: list[Slice] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    uses: list[Use] = field(default_factory=list)
    bn_nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    axis: int
    rank: int
    segs: tuple[tuple[int, int], ...]  # (space id, channels)
    expand: int = 1

    @property
    def channels(self) -> int:
        return sum(n for _, n in self.segs)

    def offsets(self) -> list[tuple[int, int, int]]:
        """(space, channels, offset in channels) per segment."""
        out, off = [], 0
        for s, n in self.segs:
            out.append((s, n, off))
            off += n
        return out

    def moved(self, axis: int, rank: int, expand: int | None = None) -> Layout:
        return Layout(axis, rank, self.segs, self.expand if expand is None else expand)


@dataclass(frozen=True)
class Fix:
    """A node edit that follows from the kept channels (attribute or shape constant)."""

    kind: str  # dw_group | reshape_tail | split_sizes | slice_bounds
    node: str
    data: tuple


@dataclass(frozen=True)
class MacDeps:
    """How one compute node's MACs scale with the kept channels of the spaces it reads and writes."""

    node: str
    in_segs: tuple[tuple[int, int], ...]
    out_space: int | None


@dataclass
class Group:
    id: int
    kind: str
    size: int
    unit: int
    spaces: list[int]
    origins: list[str]
    slices: list[Slice]
    uses: list[Use]
    bn_nodes: list[str]
    reasons: list[str]

    @property
    def prunable(self) -> bool:
        return not self.reasons

    @property
    def name(self) -> str:
        head = self.origins[0] if self.origins else f"group{self.id}"
        return head if len(self.origins) == 1 else f"{head} (+{len(self.origins) - 1} coupled)"


@dataclass
class Analysis:
    groups: list[Group]
    space_group: dict[int, int]
    fixes: list[Fix]
    macs: list[MacDeps]
    notes: list[str]


class Analyzer:
    """Holds the spaces, union-find and per-tensor layouts while rules run over the graph."""

    def __init__(self, model: ir.Model, skip: Sequence[str] = ()) -> None:
        self.graph = model.graph
        self.skip = set(skip)
        self.spaces: list[Space] = []
        self.parent: list[int] = []
        self.layouts: dict[int, Layout | str | None] = {}
        self.fixes: list[Fix] = []
        self.macs: list[MacDeps] = []
        self.notes: list[str] = []
        self.claimed_full: set[str] = set()
        self.claimed_out: set[str] = set()
        self.claimed_in: set[str] = set()
        self.head_space: dict[str, int] = {}  # node -> heads space for claimed compute nodes

    # spaces -------------------------------------------------------------------------------------------
    def new_space(self, size: int, origin: str, kind: str = "channels", unit: int = 1) -> int:
        sid = len(self.spaces)
        self.spaces.append(Space(sid, size, origin, kind, unit))
        self.parent.append(sid)
        if origin in self.skip:
            self.spaces[sid].reasons.append(f"node {origin} is in --skip")
        return sid

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def block(self, layout: Layout | str | None, reason: str) -> None:
        if isinstance(layout, Layout):
            for s, _ in layout.segs:
                if reason not in self.spaces[s].reasons:
                    self.spaces[s].reasons.append(reason)

    def add_slice(self, layout: Layout, value: ir.Value | None, axis: int, kind: str, node: str,
                  *, expand: int | None = None) -> None:
        """Slice `value` along `axis` following each segment of `layout`."""
        if value is None or not value.name:
            return
        exp = layout.expand if expand is None else expand
        for s, _, off in layout.offsets():
            self.spaces[s].slices.append(Slice(value.name, axis, off * exp, exp, kind, node))

    def add_use(self, layout: Layout, node: str, tensor: str) -> None:
        for s, _, off in layout.offsets():
            self.spaces[s].uses.append(Use(node, tensor, layout.axis, off * layout.expand, layout.expand))

    # layouts ------------------------------------------------------------------------------------------
    def get(self, v: ir.Value | None) -> Layout | str | None:
        return None if v is None else self.layouts.get(id(v))

    def set(self, v: ir.Value | None, layout: Layout | str | None) -> None:
        if v is not None:
            self.layouts[id(v)] = layout

    def finish(self) -> Analysis:
        """The groups: spaces joined by the unions, with every reason that blocks any of their spaces."""
        members: dict[int, list[int]] = {}
        for s in range(len(self.spaces)):
            members.setdefault(self.find(s), []).append(s)
        groups: list[Group] = []
        space_group: dict[int, int] = {}
        for root in sorted(members):
            sp = [self.spaces[s] for s in members[root]]
            reasons: list[str] = []
            for space in sp:
                for r in space.reasons:
                    if r not in reasons:
                        reasons.append(r)
            if not any(sl.kind in ("weight_out", "dw_weight") for s in sp for sl in s.slices):
                if not reasons:
                    reasons.append("no producer weights to remove")
            gid = len(groups)
            base = self.spaces[root]
            groups.append(Group(gid, base.kind, base.size, base.unit, members[root], [s.origin for s in sp],
                                [sl for s in sp for sl in s.slices], [u for s in sp for u in s.uses],
                                [b for s in sp for b in s.bn_nodes], reasons))
            for s in members[root]:
                space_group[s] = gid
        return Analysis(groups, space_group, self.fixes, self.macs, self.notes)
