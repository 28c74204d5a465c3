"""The zoo side of bench/real_models.py: compare hints -> CompareConfig and CLI flags, data subsets for --fast,
the timing feed, and whether a model is a transformer (ORT's quantize_dynamic variants apply)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRANSFORMER_KINDS = ("embedding", "transformer", "text", "nlp")


def load_zoo(cache: str | None) -> dict[str, Any]:
    """The prepared zoo (bench/zoo/prepare.py's load_zoo)."""
    from bench.zoo.prepare import load_zoo as _load

    return _load(cache)


def _ref(name: Any, channel: Any = None) -> str:
    if not isinstance(name, str):
        raise ValueError(f"one output name expected, got {name!r}")
    return f"{name}[{int(channel)}:{int(channel) + 1}]" if channel is not None else name


def detection_text(hint: Any) -> str:
    """The zoo's detection hint (a dict, or already 'boxes=..,scores=..' text) as the --detection text; raises
    ValueError / ConfigError when edgecompress.fidelity's DetectionSpec cannot express it."""
    from edgecompress.fidelity import DetectionSpec

    if isinstance(hint, str):
        DetectionSpec.parse(hint)
        return hint
    parts = [f"boxes={_ref(hint['boxes'])}", f"scores={_ref(hint['scores'], hint.get('score_channel'))}"]
    if hint.get("classes"):
        parts.append(f"classes={_ref(hint['classes'])}")
    fmt = hint.get("box_format", hint.get("format"))
    if fmt:
        parts.append(f"format={fmt}")
    thr = hint.get("score_threshold", hint.get("threshold"))
    if thr is not None:
        parts.append(f"threshold={thr}")
    for key in ("stride", "window"):
        if hint.get(key) is not None:
            parts.append(f"{key}={hint[key]}")
    iou = hint.get("iou", hint.get("iou_threshold"))
    if iou is not None:
        parts.append(f"iou={iou}")
    text = ",".join(parts)
    DetectionSpec.parse(text)
    return text


def state_texts(hint: Any) -> tuple[str, ...]:
    """[['state', 'stateN'], ...] or ['state=stateN', ...] or 'none' -> ('state=stateN', ...)."""
    if not hint:
        return ()
    if isinstance(hint, str):
        return (hint,)
    return tuple(p if isinstance(p, str) else f"{p[0]}={p[1]}" for p in hint)


def compare_settings(compare: dict[str, Any]) -> tuple[Any, list[str], list[str]]:
    """(CompareConfig, CLI flags for quantize/prune, notes) from a ZooModel's `compare` hints.

    detection -> --detection when DetectionSpec can express it (else a note: the outputs are then judged one by
    one, auto); state -> --state IN=OUT; binary_score.threshold -> CompareConfig.threshold (it judges [1, 1]
    probabilities; the CLI has no flag for it, so the CLI calls keep 0.5); a metric hint -> --metric. The rest
    (per-output metrics, notes, decoders) has no counterpart and is listed."""
    from edgecompress.errors import ConfigError
    from edgecompress.fidelity import CompareConfig

    kw: dict[str, Any] = {}
    flags: list[str] = []
    notes: list[str] = []
    hint = compare.get("detection")
    if hint:
        try:
            kw["detection"] = detection_text(hint)
            flags += ["--detection", kw["detection"]]
        except (ConfigError, ValueError, KeyError, TypeError) as exc:
            fmt = hint.get("box_format", "?") if isinstance(hint, dict) else "?"
            msg = getattr(exc, "message", None) or str(exc)
            notes.append(f"detection hint (box_format {fmt}) not expressible as --detection: {msg}; outputs "
                         "judged one by one (auto), no detection_recall")
    state = state_texts(compare.get("state"))
    if state:
        kw["state"] = state
        for st in state:
            flags += ["--state", st]
    if compare.get("metric"):
        kw["metric"] = str(compare["metric"])
        flags += ["--metric", kw["metric"]]
    binary = compare.get("binary_score")
    if isinstance(binary, dict) and binary.get("threshold") is not None:
        kw["threshold"] = float(binary["threshold"])
        if kw["threshold"] != 0.5:
            notes.append(f"binary_score threshold {kw['threshold']:g} used for scoring here; the CLI has no "
                         "threshold flag (it judges with 0.5); a [1, 2] softmax output is judged by top-1 "
                         "(= threshold 0.5) either way")
    used = {"detection", "state", "metric", "binary_score", "notes"}
    rest = sorted(k for k in compare if k not in used)
    if rest:
        notes.append(f"compare hints without a counterpart in edgecompress.fidelity: {', '.join(rest)}")
    return CompareConfig(**kw), flags, notes


def subset(src: Path, dest: Path, n: int) -> Path:
    """The first `n` samples of a split in its own format (a .npz: axis 0 of every key; a folder: the first n
    .npz files in sorted order, other files copied). Returns `src` itself when it has no more than n."""
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix == ".npz")
        if len(files) <= n:
            return src
        dest.mkdir(parents=True)
        for f in files[:n]:
            shutil.copyfile(f, dest / f.name)
        for f in src.iterdir():
            if f.is_file() and f.suffix != ".npz":
                shutil.copyfile(f, dest / f.name)
        return dest
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if all(len(v) <= n for v in arrays.values()):
        return src
    np.savez(dest, **{k: v[:n] for k, v in arrays.items()})
    return dest


def timing_feed(feeds: Sequence[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], str]:
    """One feed of the score split for timing: the first, or for variable-length feeds (text) the one of median
    size. Returns the feed and how it was picked."""
    sizes = [sum(int(v.size) for v in f.values()) for f in feeds]
    if len(set(sizes)) <= 1:
        f = feeds[0]
        return f, "first score feed " + ", ".join(f"{k} {list(v.shape)}" for k, v in f.items())
    order = np.argsort(sizes, kind="stable")
    k = int(order[len(order) // 2])
    f = feeds[k]
    return f, f"score feed {k} of median size " + ", ".join(f"{n} {list(v.shape)}" for n, v in f.items())


def is_transformer(kind: str, model_path: Path) -> tuple[bool, str]:
    """ORT's quantize_dynamic variants apply to transformers: kind says so, or the graph has MatMul/Gemm and
    no Conv (MatMul-dominated MACs)."""
    import onnx

    if kind.lower() in TRANSFORMER_KINDS:
        return True, f"kind {kind}"
    proto = onnx.load(str(model_path), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    if "Conv" not in ops and ops & {"MatMul", "Gemm"}:
        return True, "MatMul/Gemm without Conv"
    return False, ""
