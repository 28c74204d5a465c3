"""Numeric parity of the exported ONNX model against PyTorch, output by output.

Error measure: max |onnx - torch| over all elements and samples, divided by the output's scale (max |torch|).
An output passes when that ratio is <= the tolerance (default 1e-4).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import FeedData, TensorSpec, load_data, random_array
from ..errors import ModelError
from ..onnxgraph.runtime import compare_outputs, run_all
from .config import InputSpec


@dataclass(frozen=True)
class Parity:
    kind: str  # "random" | "data"
    samples: int
    shapes: list[dict[str, list[int]]]  # the distinct input shapes that were run
    outputs: list[dict[str, Any]]  # name, max_abs, scale, rel_to_scale, cosine, top1_agreement, ok
    tolerance: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o["ok"] for o in self.outputs)

    @property
    def max_error_rel_to_scale(self) -> float:
        return max((o["rel_to_scale"] for o in self.outputs), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": self.ok, "samples": self.samples, "shapes": self.shapes,
                "max_error_rel_to_scale": self.max_error_rel_to_scale, "tolerance": self.tolerance,
                "outputs": self.outputs, "notes": self.notes}


def _flatten(obj: Any, out: list[Any]) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _flatten(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _flatten(x, out)
    else:
        raise ModelError(f"the model returns a {type(obj).__name__}; expected tensors (or tuples/lists/dicts of them)")


def forward(module, args: tuple, *, what: str = "inputs") -> tuple[list[np.ndarray], list[str] | None]:
    """Run the module; (outputs as float arrays in flattened order, dict keys when it returns a flat dict)."""
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation chatter is not the user's concern here
            res = module(*args)
    except Exception as exc:  # user model code: wrong shapes/dtypes are user input errors
        text = " ".join(str(exc).split())[:300]
        raise ModelError(f"the model's forward() fails on {what}: {type(exc).__name__}: {text}",
                         hint="check --input NAME:SHAPE[:DTYPE] against what the model expects") from None
    outs: list[Any] = []
    _flatten(res, outs)
    if not outs:
        raise ModelError("the model returns no tensors")
    keys = [str(k) for k in res] if isinstance(res, dict) and len(res) == len(outs) else None
    return [o.detach().cpu().numpy() for o in outs], keys


def _dim_sizes(specs: list[InputSpec], i: int) -> dict[str, int]:
    """Sizes of the named dynamic dims for random sample i: the example size, then +1, then +3."""
    sizes: dict[str, int] = {}
    for s in specs:
        for axis, name in s.dynamic.items():
            sizes.setdefault(name, s.shape[axis] + (0, 1, 3)[i % 3])
    return sizes


def random_inputs(specs: list[InputSpec], n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed + 1)
    feeds = []
    for i in range(n):
        sizes = _dim_sizes(specs, i)
        feed = {}
        for s in specs:
            shape = tuple(sizes[s.dynamic[a]] if a in s.dynamic else d for a, d in enumerate(s.shape))
            feed[s.name] = random_array(rng, shape, s.dtype, s.name)
        feeds.append(feed)
    return feeds


def validate_data_early(data: Any, specs: list[InputSpec], n: int) -> FeedData:
    """Load `data` and check it against the declared inputs before any export work (DataError on mismatch)."""
    fd = load_data(data, what="data")
    tspecs = [TensorSpec(s.name, s.onnx_shape(), np.dtype(s.dtype)) for s in specs]
    return fd.validated(tspecs, what="data").head(n)


def data_feeds(fd: FeedData, proto) -> list[dict[str, np.ndarray]]:
    from ..onnxgraph.io import input_specs

    return list(fd.validated(input_specs(proto), what="data"))


def check_parity(module, session, specs: list[InputSpec], names: list[str], config, *, kind: str,
                 feeds: list[dict[str, np.ndarray]] | None = None) -> Parity:
    import torch

    if feeds is None:
        feeds = random_inputs(specs, config.samples, config.seed)
    ref: list[list[np.ndarray]] = [[] for _ in names]
    shapes: list[dict[str, list[int]]] = []
    for k, feed in enumerate(feeds):
        shape = {n: list(a.shape) for n, a in feed.items()}
        if shape not in shapes:
            shapes.append(shape)
        args = tuple(torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in specs)
        outs, _ = forward(module, args, what=f"{kind} sample {k}")
        if len(outs) != len(names):
            raise ModelError(f"the model returned {len(outs)} outputs on {kind} sample {k}, the ONNX model has "
                             f"{len(names)}")
        for i, o in enumerate(outs):
            ref[i].append(o)
    got = run_all(session, feeds, output_names=names)
    for i in range(len(names)):  # dynamic axes: samples of different shapes are compared as one flat vector
        if len({a.shape for a in ref[i]}) > 1 or len({a.shape for a in got[i]}) > 1:
            ref[i] = [np.concatenate([a.ravel() for a in ref[i]])[None]]
            got[i] = [np.concatenate([a.ravel() for a in got[i]])[None]]
    cmp = compare_outputs(ref, got, names, rel_tol=config.tolerance)
    rows = []
    for d in cmp.outputs:
        rel = d.max_abs / d.scale if d.scale > 0 else (0.0 if d.max_abs == 0 else float("inf"))
        rows.append({"name": d.name, "max_abs": d.max_abs, "scale": d.scale, "rel_to_scale": rel,
                     "cosine": d.cosine, "top1_agreement": d.top1_agreement,
                     "ok": bool(np.isfinite(rel) and rel <= config.tolerance)})
    return Parity(kind, len(feeds), shapes, rows, config.tolerance)
