"""CompareConfig: how two models are compared (what the outputs mean, which metric judges them).

Field names are recipe keys and CLI flags of every stage that compares (quantize, prune, bench):
  metric: auto | top1 | accuracy | cosine | mse (see docs/fidelity.md for what each judges);
  detection: "boxes=NAME,scores=NAME[,classes=NAME][,format=xyxy|xywh|cxcywh|yxyx|offsets][,threshold=0.5]
    [,iou=0.5][,stride=1][,window=1]"; NAME may slice the channel axis of one output, e.g.
    boxes=out[0:4],scores=out[4:]; format=offsets: the boxes are (dx1, dy1, dx2, dy2) of a window of side
    `window`, in units of it, one window per cell of a [4, H, W] map (cell (r, c) at (c, r) * stride) or one
    window at the origin per [4] row (proposal/refinement networks);
  state: "IN=OUT" pairs of a stateful model (closed-loop evaluation); empty = detected from names and shapes;
    "none" switches the detection off;
  threshold: decision threshold of scalar probability outputs ([1, 1] in [0, 1]; default 0.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

METRICS = ("auto", "top1", "accuracy", "cosine", "mse")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx", "offsets")
DETECTION_KEYS = ("boxes", "scores", "classes", "format", "threshold", "iou", "stride", "window")
_REF = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")


@dataclass(frozen=True)
class OutputRef:
    """An output, optionally sliced along its channel axis (`name[start:stop]`)."""

    name: str
    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str, what: str) -> OutputRef:
        m = _REF.match(text.strip())
        if not m or not m.group("name").strip():
            raise ConfigError(f"detection {what} must be an output name, optionally sliced as NAME[a:b]; got {text!r}")
        start, stop = m.group("start"), m.group("stop")
        return cls(m.group("name").strip(), int(start) if start else None, int(stop) if stop else None)

    @property
    def sliced(self) -> bool:
        return self.start is not None or self.stop is not None

    def __str__(self) -> str:
        if not self.sliced:
            return self.name
        return f"{self.name}[{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}]"


@dataclass(frozen=True)
class DetectionSpec:
    """Which outputs hold a detector's boxes and scores, and how detections are matched."""

    boxes: OutputRef
    scores: OutputRef
    classes: OutputRef | None = None
    box_format: str = "xyxy"
    score_threshold: float = 0.5
    iou: float = 0.5
    stride: float = 1.0  # format=offsets: cell spacing of the window grid
    window: float = 1.0  # format=offsets: window side (the unit of the offsets)

    def __post_init__(self) -> None:
        for name, v in (("stride", self.stride), ("window", self.window)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v) > 0:
                raise ConfigError(f"detection {name} must be a positive number, got {v!r}")
        if self.box_format not in BOX_FORMATS:
            raise ConfigError(f"detection format must be one of {', '.join(BOX_FORMATS)}, got {self.box_format!r}")
        for name, v in (("threshold", self.score_threshold), ("iou", self.iou)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < float(v) < 1:
                raise ConfigError(f"detection {name} must be a number in (0, 1), got {v!r}")

    @classmethod
    def parse(cls, text: str) -> DetectionSpec:
        """From 'boxes=NAME,scores=NAME[,classes=NAME][,format=F][,threshold=T][,iou=I]'."""
        fields: dict[str, str] = {}
        for part in _split_top(text):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or not value.strip():
                raise ConfigError(f"detection: expected key=value, got {part!r} in {text!r}",
                                  hint="e.g. --detection boxes=boxes,scores=scores,format=xyxy,threshold=0.5")
            if key not in DETECTION_KEYS:
                raise ConfigError(f"detection: unknown key {key!r} (known: {', '.join(DETECTION_KEYS)})")
            fields[key] = value.strip()
        missing = [k for k in ("boxes", "scores") if k not in fields]
        if missing:
            raise ConfigError(f"detection needs {' and '.join(missing)}=OUTPUT_NAME; got {text!r}")
        return cls(OutputRef.parse(fields["boxes"], "boxes"), OutputRef.parse(fields["scores"], "scores"),
                   OutputRef.parse(fields["classes"], "classes") if "classes" in fields else None,
                   fields.get("format", "xyxy"), _float(fields.get("threshold", "0.5"), "threshold"),
                   _float(fields.get("iou", "0.5"), "iou"), _float(fields.get("stride", "1"), "stride"),
                   _float(fields.get("window", "1"), "window"))

    def __str__(self) -> str:
        parts = [f"boxes={self.boxes}", f"scores={self.scores}"]
        if self.classes is not None:
            parts.append(f"classes={self.classes}")
        parts += [f"format={self.box_format}", f"threshold={self.score_threshold:g}", f"iou={self.iou:g}"]
        if self.box_format == "offsets":
            parts += [f"stride={self.stride:g}", f"window={self.window:g}"]
        return ",".join(parts)


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"detection {what} must be a number, got {text!r}") from None


def state_tuple(state: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A config's `state` as a tuple ('' -> (), 'IN=OUT' -> ('IN=OUT',)): recipes may give one string."""
    if isinstance(state, str):
        return (state,) if state else ()
    return tuple(state)


def parse_state(pairs: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...] | None:
    """('IN=OUT', ...) -> ((IN, OUT), ...); () -> None (auto-detect); ('none',) -> () (no state)."""
    if not pairs:
        return None
    if len(pairs) == 1 and pairs[0].strip().lower() == "none":
        return ()
    out = []
    for p in pairs:
        a, sep, b = str(p).partition("=")
        if not sep or not a.strip() or not b.strip():
            raise ConfigError(f"state must be INPUT=OUTPUT (the state input and the output that feeds it next "
                              f"step), got {p!r}")
        out.append((a.strip(), b.strip()))
    return tuple(out)


@dataclass(frozen=True)
class CompareConfig:
    """How a candidate model is compared with its reference (see the module docstring)."""

    metric: str = "auto"
    detection: str = ""
    state: tuple[str, ...] = ()
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not isinstance(self.detection, str):
            raise ConfigError(f"detection must be a string like 'boxes=NAME,scores=NAME', got {self.detection!r}")
        object.__setattr__(self, "state", state_tuple(self.state))
        if self.detection:
            DetectionSpec.parse(self.detection)
        parse_state(self.state)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0 < float(self.threshold) < 1:
            raise ConfigError(f"threshold must be a number in (0, 1), got {self.threshold!r}")

    @property
    def detection_spec(self) -> DetectionSpec | None:
        return DetectionSpec.parse(self.detection) if self.detection else None

    @property
    def state_pairs(self) -> tuple[tuple[str, str], ...] | None:
        return parse_state(self.state)
