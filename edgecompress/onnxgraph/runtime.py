"""ONNX Runtime sessions and numeric comparison of outputs (the runtime check that closes every stage)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..data import Feed, FeedData
from ..errors import ModelError, RuntimeFailure
from ..fsutil import private_tempdir

if TYPE_CHECKING:
    import onnx

GRAPH_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}


def make_session(model: str | os.PathLike[str] | bytes | Any, *, threads: int = 1, providers: Sequence[str] | None = None,
                 graph_optimization: str = "all", optimized_path: str | None = None, origin: str = "model",
                 config_entries: Mapping[str, str] | None = None):
    """An InferenceSession with explicit threads/providers (and session config entries); load failures become
    ModelError. `model`: a path (its external data found beside it), serialized bytes, or an onnx.ModelProto (one
    over 2 GB is written with external data to a private temp folder for ORT to load, then removed)."""
    import onnxruntime as ort

    if hasattr(model, "graph") and hasattr(model, "SerializeToString"):
        from .io import is_large, save_model

        proto = cast("onnx.ModelProto", model)
        if not is_large(proto):
            model = proto.SerializeToString()
        else:
            with private_tempdir("edgecompress-session-") as tmp:
                return make_session(save_model(proto, tmp / "model.onnx", external=True), threads=threads,
                                    providers=providers, graph_optimization=graph_optimization,
                                    optimized_path=optimized_path, origin=origin, config_entries=config_entries)

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[graph_optimization])
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    for key, value in (config_entries or {}).items():
        so.add_session_config_entry(key, value)
    available = set(ort.get_available_providers())
    provs = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=so, providers=provs)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        text = " ".join(str(exc).split())
        raise ModelError(f"ONNX Runtime cannot load {origin}: {text[:400]}") from None


def run_all(session, data: FeedData | Iterable[Feed], *, output_names: Sequence[str] | None = None) -> list[list[np.ndarray]]:
    """Run every feed; return per-output lists of arrays (outputs[i][k] = output i of sample k)."""
    names = list(output_names) if output_names else [o.name for o in session.get_outputs()]
    outs: list[list[np.ndarray]] = [[] for _ in names]
    for k, feed in enumerate(data):
        try:
            res = session.run(names, feed)
        except Exception as exc:
            text = " ".join(str(exc).split())
            raise RuntimeFailure(f"ONNX Runtime failed on sample {k}: {text[:400]}") from None
        for i, r in enumerate(res):
            outs[i].append(np.asarray(r))
    return outs


@dataclass(frozen=True)
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    scale: float
    cosine: float
    top1_agreement: float | None
    ok: bool
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Comparison:
    outputs: tuple[OutputDiff, ...]
    samples: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "samples": self.samples, "outputs": [o.to_dict() for o in self.outputs],
                "notes": list(self.notes)}

    def summary(self) -> str:
        return "; ".join(f"{o.name}: max_abs={o.max_abs:.3g} (scale {o.scale:.3g}, rel {o.max_abs / max(o.scale, 1e-12):.3g})"
                         for o in self.outputs)


def _rows(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One output's samples as float64 rows: a scalar is one row, an array gives one row per first-axis entry.
    Samples of different shapes (sequences of different lengths) become one row of all their values."""
    if not arrays:
        return np.zeros((0, 0))
    rows = [np.asarray(x, dtype=np.float64).reshape(len(x) if np.ndim(x) else 1, -1) for x in arrays]
    if len({r.shape[1] for r in rows}) > 1:
        return np.concatenate([r.ravel() for r in rows])[None, :]
    return np.concatenate(rows)


def compare_outputs(ref: Sequence[Sequence[np.ndarray]], got: Sequence[Sequence[np.ndarray]], names: Sequence[str],
                    *, rel_tol: float = 1e-4) -> Comparison:
    """Per output: max abs error, error relative to the output's scale (max |ref|), cosine, top-1 agreement.

    `ok` when max_abs <= rel_tol * max(scale, 1).
    """
    diffs = []
    for name, r_list, g_list in zip(names, ref, got, strict=False):
        r, g = _rows(r_list), _rows(g_list)
        if r.shape != g.shape:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), 0.0, 0.0, None, False, rel_tol))
            continue
        err = np.abs(r - g)
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        max_abs = float(err.max()) if err.size else 0.0
        max_rel = float((err / np.maximum(np.abs(r), 1e-6)).max()) if err.size else 0.0
        num = float((r * g).sum())
        den = float(np.linalg.norm(r) * np.linalg.norm(g))
        cos = num / den if den > 0 else (1.0 if max_abs == 0 else 0.0)
        top1 = None
        if r.ndim == 2 and r.shape[1] > 1 and len(r_list) and np.ndim(r_list[0]) == 2:
            top1 = float((r.argmax(1) == g.argmax(1)).mean())
        ok = bool(np.isfinite(max_abs) and max_abs <= rel_tol * max(scale, 1.0))
        diffs.append(OutputDiff(name, max_abs, max_rel, scale, cos, top1, ok, rel_tol))
    n = len(ref[0]) if ref else 0
    return Comparison(tuple(diffs), n)
