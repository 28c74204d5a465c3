"""Feed data: calibration / evaluation / training samples in the formats of README 'Data formats'.

Formats accepted by `load_data(spec)`:
  * one ``.npz``: keys are input names, axis 0 indexes samples, optional ``labels``;
  * a folder of ``.npz`` files, each one feed (full input shapes), optional ``labels`` in each, sorted by name;
  * a folder of images (optionally one sub-folder per class) plus an `ImageSpec`;
  * a Python entry point ``module:function`` or ``path/file.py:function`` returning an iterable of feed dicts.

`FeedData.validated(inputs)` checks names, rank, static dims and dtype against a model's inputs and rejects
NaN/Inf and empty sets; every error says what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import itertools
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError
from .specs import import_callable
from .specs import short as _short

LABELS = "labels"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".webp")

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (ints for static dims, str/None for symbolic), numpy dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": str(np.dtype(self.dtype))}


@dataclass(frozen=True)
class ImageSpec:
    """How to turn an image file into a model input."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    layout: str = "NCHW"
    channel_order: str = "RGB"
    grayscale: bool = False
    scale: float = 1 / 255.0

    def __post_init__(self) -> None:
        if len(self.size) != 2 or any((not isinstance(s, int)) or s <= 0 for s in self.size):
            raise ConfigError(f"image.size must be two positive integers [height, width], got {list(self.size)}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"image.layout must be NCHW or NHWC, got {self.layout!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"image.channel_order must be RGB or BGR, got {self.channel_order!r}")
        channels = 1 if self.grayscale else 3
        for name in ("mean", "std"):
            v = getattr(self, name)
            if len(v) not in (1, channels):
                raise ConfigError(f"image.{name} needs 1 or {channels} values, got {len(v)}")
        if any(s == 0 for s in self.std):
            raise ConfigError("image.std must not contain 0")


def _hash_feed(h: Any, feed: Feed) -> None:
    for k in sorted(feed):
        a = np.ascontiguousarray(feed[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())


def feed_key(feed: Feed) -> bytes:
    """A digest of one feed (sorted keys, dtype, shape, bytes): equal feeds, equal keys."""
    h = hashlib.sha256()
    _hash_feed(h, feed)
    return h.digest()


class FeedData:
    """An ordered, re-iterable set of feeds (dicts name -> array, batch 1) with optional labels."""

    def __init__(self, feeds: Callable[[], Iterator[Feed]], n: int, *, labels: np.ndarray | None = None,
                 source: str = "<memory>", notes: Sequence[str] = ()) -> None:
        self._feeds = feeds
        self.n = n
        self.labels = labels
        self.source = source
        self.notes = list(notes)
        self._hash: str | None = None

    # construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, labels: np.ndarray | None = None,
                    source: str = "<arrays>") -> FeedData:
        """Axis 0 of every array indexes samples; each sample is fed with a leading batch dim of 1."""
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if not arrays:
            raise DataError(f"{source}: no input arrays (expected at least one key besides '{LABELS}')")
        sizes = {k: (v.shape[0] if v.ndim else -1) for k, v in arrays.items()}
        if any(s < 0 for s in sizes.values()):
            bad = next(k for k, s in sizes.items() if s < 0)
            raise DataError(f"{source}: key {bad!r} is a scalar; expected an array with samples on axis 0")
        if len(set(sizes.values())) != 1:
            raise DataError(f"{source}: inputs disagree on the number of samples (axis 0): {sizes}")
        n = next(iter(sizes.values()))
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 0 or labels.shape[0] != n:
                found = labels.shape[0] if labels.ndim else "a scalar"
                raise DataError(f"{source}: '{LABELS}' has {found} entries, expected {n} (one per sample)")

        def gen() -> Iterator[Feed]:
            for i in range(n):
                yield {k: v[i : i + 1] for k, v in arrays.items()}

        fd = cls(gen, n, labels=labels, source=source)
        fd._arrays = arrays  # type: ignore[attr-defined]
        return fd

    @classmethod
    def from_feeds(cls, feeds: Sequence[Feed], *, labels: np.ndarray | None = None,
                   source: str = "<feeds>") -> FeedData:
        feeds = [{k: np.asarray(v) for k, v in f.items()} for f in feeds]
        return cls(lambda: iter(feeds), len(feeds), labels=labels, source=source)

    # access -----------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Feed]:
        return self._feeds()

    def __len__(self) -> int:
        return self.n

    @property
    def input_names(self) -> list[str]:
        for feed in self:
            return sorted(feed)
        return []

    def feeds(self) -> list[Feed]:
        return list(self)

    def _subset(self, feeds: Sequence[Feed], idx: list[int]) -> FeedData:
        """Samples `idx`, picked from `feeds` (sample i of this data at feeds[i], read by the caller)."""
        labels = self.labels[idx] if self.labels is not None else None
        return FeedData.from_feeds([feeds[i] for i in idx], labels=labels,
                                   source=f"{self.source}[subset of {len(idx)}]")

    def take(self, indices: Iterable[int]) -> FeedData:
        return self._subset(self.feeds(), list(indices))

    def head(self, n: int) -> FeedData:
        """The first `n` samples (only those are read)."""
        idx = list(range(min(n, self.n)))
        return self._subset(list(itertools.islice(self, len(idx))), idx)

    def split(self, fraction: float, *, seed: int = 0) -> tuple[FeedData, FeedData]:
        """A fixed, seeded split into (first, second) with `fraction` of the samples in the second."""
        if not 0 < fraction < 1:
            raise ConfigError(f"split fraction must be in (0, 1), got {fraction}")
        order = np.random.default_rng(seed).permutation(self.n)
        k = max(1, int(round(self.n * fraction)))
        if k >= self.n:
            raise DataError(f"{self.source}: {self.n} samples are too few to split off {fraction:.0%}")
        feeds = self.feeds()  # read once for both parts
        return self._subset(feeds, sorted(order[k:])), self._subset(feeds, sorted(order[:k]))

    def batches(self, batch_size: int) -> Iterator[Feed]:
        """Feeds concatenated along axis 0 in groups of `batch_size` (the last may be smaller)."""
        buf: list[Feed] = []
        for feed in self:
            buf.append(feed)
            if len(buf) == batch_size:
                yield {k: np.concatenate([f[k] for f in buf]) for k in buf[0]}
                buf = []
        if buf:
            yield {k: np.concatenate([f[k] for f in buf]) for k in buf[0]}

    def stacked(self) -> Feed:
        """All samples concatenated along axis 0 (requires equal shapes)."""
        feeds = self.feeds()
        try:
            return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
        except ValueError as exc:
            raise DataError(f"{self.source}: samples have different shapes and cannot be stacked ({exc})") from None

    def content_hash(self) -> str:
        """sha256 over every feed (sorted keys, dtype, shape, bytes) and the labels: stable across runs."""
        if self._hash is None:
            h = hashlib.sha256()
            for feed in self:
                _hash_feed(h, feed)
            if self.labels is not None:
                lab = np.ascontiguousarray(self.labels)
                h.update(f"{LABELS}|{lab.dtype.str}|{lab.shape}|".encode())
                h.update(lab.tobytes())
            self._hash = h.hexdigest()
        return self._hash

    # validation -----------------------------------------------------------------------------------------
    def validated(self, inputs: Sequence[TensorSpec], *, what: str = "data") -> FeedData:
        """Check every feed against the model inputs; return a FeedData keyed by the model's input names.

        A single-input model takes the one non-labels key whatever it is called. Same-kind dtype differences
        (float64 -> float32, int32 -> int64) are cast and noted; other mismatches raise DataError.
        """
        src = f"{what} {self.source}"
        if self.n == 0:
            raise DataError(f"{src}: empty: expected at least one sample, found 0")
        keys = self.input_names
        expected = [t.name for t in inputs]
        rename: dict[str, str] = {}
        notes = list(self.notes)
        if set(keys) != set(expected):
            if len(expected) == 1 and len(keys) == 1:
                rename = {keys[0]: expected[0]}
                notes.append(f"key {keys[0]!r} fed as the model's only input {expected[0]!r}")
            else:
                missing = sorted(set(expected) - set(keys))
                extra = sorted(set(keys) - set(expected))
                parts = []
                if missing:
                    parts.append(f"missing {missing}")
                if extra:
                    parts.append(f"unexpected {extra}")
                raise DataError(f"{src}: input names do not match the model: expected {expected}, found {keys} "
                                f"({'; '.join(parts)})")
        specs = {t.name: t for t in inputs}
        casts: dict[str, np.dtype] = {}
        for i, feed in enumerate(self):
            if sorted(feed) != keys:
                raise DataError(f"{src}: sample {i} has keys {sorted(feed)}, expected {keys} like sample 0")
            for key, arr in feed.items():
                name = rename.get(key, key)
                _check_array(src, i, name, arr, specs[name], casts)
            _check_not_all_empty(src, i, feed)
        base = self

        def gen() -> Iterator[Feed]:
            for feed in base:
                out = {}
                for key, arr in feed.items():
                    name = rename.get(key, key)
                    out[name] = arr.astype(casts[name]) if name in casts else arr
                yield out

        for name, dt in casts.items():
            notes.append(f"input {name!r} cast to {dt} (same kind as the data's dtype)")
        fd = FeedData(gen, self.n, labels=self.labels, source=self.source, notes=notes)
        return fd


def _check_array(src: str, i: int, name: str, arr: np.ndarray, spec: TensorSpec, casts: dict[str, np.dtype]) -> None:
    want = np.dtype(spec.dtype)
    if arr.dtype != want:
        same_kind = (arr.dtype.kind == want.kind) or (arr.dtype.kind in "iu" and want.kind in "iu")
        if not same_kind or arr.dtype == np.dtype(bool) or want == np.dtype(bool):
            raise DataError(f"{src}: input {name!r} has dtype {arr.dtype}, expected {want}")
        casts[name] = want
    if arr.ndim != len(spec.shape):
        raise DataError(f"{src}: input {name!r} sample {i} has rank {arr.ndim} (shape {list(arr.shape)}), "
                        f"expected rank {len(spec.shape)} (model shape {list(spec.shape)})")
    for axis, (got, dim) in enumerate(zip(arr.shape, spec.shape, strict=False)):
        if isinstance(dim, int) and dim > 0 and got != dim:
            raise DataError(f"{src}: input {name!r} sample {i} has shape {list(arr.shape)}, expected "
                            f"{list(spec.shape)} (axis {axis}: {got} != {dim})")
    if arr.size == 0 and not all(isinstance(dim, str) or dim is None or dim == 0
                                 for got, dim in zip(arr.shape, spec.shape, strict=False) if got == 0):
        raise DataError(f"{src}: input {name!r} sample {i} is empty (shape {list(arr.shape)})")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "Inf"
        raise DataError(f"{src}: input {name!r} sample {i} contains {bad}; expected finite values")


def _check_not_all_empty(src: str, i: int, feed: Feed) -> None:
    """A zero-length dynamic axis is data (an empty KV cache beside the tokens), but only beside a non-empty input:
    a feed with nothing in it, or a single-input model fed an empty array, is an error."""
    empty = [k for k, a in feed.items() if np.asarray(a).size == 0]
    if empty and len(empty) == len(feed):
        k = empty[0]
        raise DataError(f"{src}: input {k!r} sample {i} is empty (shape {list(np.shape(feed[k]))})")


# loaders ------------------------------------------------------------------------------------------------

def load_data(spec: str | Path | FeedData | None, *, image: ImageSpec | None = None,
              what: str = "data") -> FeedData:
    """Load feed data from any supported format (see module docstring)."""
    if isinstance(spec, FeedData):
        return spec
    if spec is None or str(spec).strip() == "":
        raise DataError(f"no {what} given")
    s = str(spec)
    p = Path(s)
    if p.is_file() and p.suffix == ".npz":
        return _load_npz(p, what)
    if p.is_dir():
        npz = sorted(p.glob("*.npz"))
        if npz:
            return _load_npz_folder(p, npz, what)
        if _image_files(p):
            return _load_images(p, image or ImageSpec(), what)
        raise DataError(f"{what} folder {p} has no .npz files and no images ({', '.join(IMAGE_SUFFIXES)})")
    if ":" in s and not p.exists():
        return _load_entry_point(s, what)
    if p.exists():
        raise DataError(f"{what} {p}: unsupported file type {p.suffix or '(none)'}; expected .npz, a folder of "
                        ".npz or images, or module:function")
    raise DataError(f"{what} not found: {s}")


def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise DataError(f"{what} {path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise DataError(f"{what} {path}: unreadable array ({exc}); object arrays and pickles are refused") from None


def _load_npz(path: Path, what: str) -> FeedData:
    arrays = _read_npz(path, what)
    labels = arrays.pop(LABELS, None)
    if not arrays:
        raise DataError(f"{what} {path}: no input arrays (keys: {sorted(arrays) or 'none'} besides '{LABELS}')")
    if any(a.ndim >= 1 and a.shape[0] == 0 for a in arrays.values()):
        raise DataError(f"{what} {path}: empty: expected at least one sample on axis 0, found 0")
    return FeedData.from_arrays(arrays, labels=labels, source=str(path))


def _load_npz_folder(folder: Path, files: list[Path], what: str) -> FeedData:
    first = _read_npz(files[0], what)
    has_labels = LABELS in first
    labels: list[Any] = []
    for f in files:
        arrays = _read_npz(f, what) if f != files[0] else first
        if (LABELS in arrays) != has_labels:
            raise DataError(f"{what} {f}: '{LABELS}' present in some files and missing in others")
        if has_labels:
            labels.append(np.asarray(arrays[LABELS]).reshape(-1)[0] if arrays[LABELS].size == 1 else arrays[LABELS])

    def gen() -> Iterator[Feed]:
        for f in files:
            arrays = _read_npz(f, what)
            arrays.pop(LABELS, None)
            yield arrays

    return FeedData(gen, len(files), labels=_stack_labels(labels) if has_labels else None, source=str(folder))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_images(folder: Path, spec: ImageSpec, what: str) -> FeedData:
    from PIL import Image, UnidentifiedImageError

    files = _image_files(folder)
    classes = sorted({f.parent.name for f in files if f.parent != folder})
    labels = None
    if classes and all(f.parent != folder for f in files):
        index = {c: i for i, c in enumerate(classes)}
        labels = np.asarray([index[f.parent.name] for f in files], dtype=np.int64)

    def load_one(f: Path) -> np.ndarray:
        try:
            with Image.open(f) as opened:
                im = opened.convert("L" if spec.grayscale else "RGB")
                im = im.resize((spec.size[1], spec.size[0]), Image.Resampling.BILINEAR)
                a: np.ndarray = np.asarray(im, dtype=np.float32) * spec.scale
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{what} {f}: not a readable image ({exc})") from None
        if a.ndim == 2:
            a = a[:, :, None]
        if spec.channel_order == "BGR":
            a = a[:, :, ::-1]
        a = (a - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
        if spec.layout == "NCHW":
            a = a.transpose(2, 0, 1)
        return np.ascontiguousarray(a[None])

    def gen() -> Iterator[Feed]:
        for f in files:
            yield {"input": load_one(f)}

    return FeedData(gen, len(files), labels=labels, source=str(folder),
                    notes=[f"{len(files)} images, {len(classes)} classes" if labels is not None else
                           f"{len(files)} images"])


def _import_callable(spec: str, what: str) -> Callable[..., Any]:
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ConfigError(f"{what} entry point must look like module:function or path/file.py:function, got {spec!r}")
    return import_callable(spec, f"{what} entry point", error=DataError, noun="function")


def _load_entry_point(spec: str, what: str) -> FeedData:
    fn = _import_callable(spec, what)
    try:
        result = fn()
    except Exception as exc:  # user code: report it as a data problem naming the entry point
        raise DataError(f"{what} entry point {spec!r} raised {type(exc).__name__}: {_short(exc)}") from None
    try:
        items = list(result)
    except TypeError as exc:
        raise DataError(f"{what} entry point {spec!r} must return an iterable of feed dicts ({exc})") from None
    except Exception as exc:
        raise DataError(f"{what} entry point {spec!r}: iterating its feeds raised {type(exc).__name__}: "
                        f"{_short(exc)}") from None
    feeds: list[Feed] = []
    labels: list[Any] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{what} entry point {spec!r}: item {i} is {type(item).__name__}, expected a dict "
                            "of input name -> array")
        item = dict(item)
        if LABELS in item:
            labels.append(np.asarray(item.pop(LABELS)))
        try:
            feeds.append({k: np.asarray(v) for k, v in item.items()})
        except (ValueError, TypeError) as exc:
            raise DataError(f"{what} entry point {spec!r}: item {i} holds a value that is not an array "
                            f"({_short(exc)})") from None
    if labels and len(labels) != len(feeds):
        raise DataError(f"{what} entry point {spec!r}: '{LABELS}' given for {len(labels)} of {len(feeds)} feeds")
    lab = _stack_labels([x.reshape(-1)[0] if x.size == 1 else x for x in labels]) if labels else None
    return FeedData.from_feeds(feeds, labels=lab, source=spec)




def _stack_labels(labels: list[Any]) -> np.ndarray:
    """Per-feed labels as one array (an object array when their shapes differ)."""
    try:
        return np.asarray(labels)
    except ValueError:  # labels of different shapes per feed
        return np.asarray(labels, dtype=object)


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype: Any, name: str = "") -> np.ndarray:
    """A random test input: standard normal floats, integers in {0, 1}, all-True booleans."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind in "iu":
        return rng.integers(0, 2, size=shape).astype(dt)
    if dt.kind == "b":
        return np.ones(shape, dtype=dt)
    raise DataError(f"cannot make random data for input {name!r} of dtype {dt}")


def random_feeds(inputs: Sequence[TensorSpec], n: int, *, seed: int = 0,
                 dim_values: dict[str, int] | None = None) -> FeedData:
    """Random feeds for the given inputs (symbolic dims take `dim_values` or 1 for batch-like, else 8)."""
    rng = np.random.default_rng(seed)
    dim_values = dim_values or {}
    feeds = []
    for _ in range(n):
        feed = {}
        for t in inputs:
            shape = []
            for axis, d in enumerate(t.shape):
                if isinstance(d, int) and d > 0:
                    shape.append(d)
                else:
                    shape.append(dim_values.get(str(d), 1 if axis == 0 else 8))
            feed[t.name] = random_array(rng, shape, t.dtype, t.name)
        feeds.append(feed)
    return FeedData.from_feeds(feeds, source=f"<random x{n}, seed {seed}>")


def stats_of(data: FeedData) -> dict[str, Any]:
    return {"source": data.source, "samples": data.n, "labels": data.labels is not None,
            "sha256": data.content_hash(), "notes": data.notes}


@dataclass(frozen=True)
class DataSpec:
    """Recipe/CLI view of a data source: a path or entry point plus an optional image spec."""

    path: str
    image: ImageSpec | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def load(self, what: str = "data") -> FeedData:
        return load_data(self.path, image=self.image, what=what)
