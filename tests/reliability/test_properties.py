"""Property-based tests: whatever the input, parsing and validation raise only EdgecompressError subclasses.

Data validation, target profile parsing, recipe parsing, shape specs and ONNX loading are driven with
hypothesis-generated values; anything but an EdgecompressError (or success that keeps the invariants) fails.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecompress.data import FeedData, TensorSpec, load_data
from edgecompress.errors import EdgecompressError
from edgecompress.pipeline import recipe
from edgecompress.targets import profile_from_dict

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
                    derandomize=True)

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_, np.complex64]
NAMES = st.sampled_from(["input", "x", "ids", "mask", "labels", "input.1", ""])


@st.composite
def specs(draw):
    n = draw(st.integers(1, 3))
    names = draw(st.lists(NAMES.filter(lambda s: s and s != "labels"), min_size=n, max_size=n, unique=True))
    out = []
    for name in names:
        rank = draw(st.integers(0, 4))
        shape = tuple(draw(st.one_of(st.integers(0, 4), st.sampled_from(["N", "seq", None])))
                      for _ in range(rank))
        out.append(TensorSpec(name, shape, np.dtype(draw(st.sampled_from([np.float32, np.int64, np.bool_])))))
    return out


@st.composite
def arrays_dict(draw):
    n = draw(st.integers(1, 3))
    names = draw(st.lists(NAMES, min_size=n, max_size=n, unique=True))
    samples = draw(st.integers(0, 3))
    out = {}
    for name in names:
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        rank = draw(st.integers(0, 4))
        shape = (samples,) + tuple(draw(st.integers(0, 3)) for _ in range(rank))
        if draw(st.booleans()):
            shape = shape[1:] or ()
        elements = None
        if dtype.kind == "f":
            elements = st.floats(allow_nan=True, allow_infinity=True, width=min(64, dtype.itemsize * 8))
        out[name] = draw(hnp.arrays(dtype, shape, elements=elements))
    return out


def _check_validated(fd: FeedData, spec_list: list[TensorSpec]) -> None:
    names = sorted(t.name for t in spec_list)
    by_name = {t.name: t for t in spec_list}
    count = 0
    for feed in fd:
        count += 1
        assert sorted(feed) == names
        for k, a in feed.items():
            t = by_name[k]
            assert a.dtype == np.dtype(t.dtype)
            assert a.ndim == len(t.shape)
            assert a.size > 0
            for got, want in zip(a.shape, t.shape, strict=True):
                if isinstance(want, int) and want > 0:
                    assert got == want
            if a.dtype.kind in "fc":
                assert np.isfinite(a).all()
    assert count == fd.n


@SETTINGS
@given(arrays=arrays_dict(), spec_list=specs(), labels=st.one_of(st.none(), st.integers(0, 4)))
def test_data_validation_raises_only_data_errors(arrays, spec_list, labels):
    lab = None
    try:
        lab_n = labels
        if lab_n is not None:
            lab = np.zeros(lab_n, np.int64)
        fd = FeedData.from_arrays(arrays, labels=lab)
        v = fd.validated(spec_list, what="calibration data")
        _check_validated(v, spec_list)
        v.content_hash()
    except EdgecompressError:
        pass


@SETTINGS
@given(arrays=arrays_dict(), spec_list=specs())
def test_npz_roundtrip_validation_raises_only_data_errors(arrays, spec_list):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data.npz"
        np.savez(p, **{k or "_": v for k, v in arrays.items()})
        try:
            fd = load_data(str(p), what="eval data")
            v = fd.validated(spec_list)
            _check_validated(v, spec_list)
        except EdgecompressError:
            pass


@SETTINGS
@given(blob=st.binary(max_size=400), cut=st.integers(0, 400))
def test_load_data_on_garbage_files(blob, cut):
    with tempfile.TemporaryDirectory() as d:
        good = Path(d) / "good.npz"
        np.savez(good, input=np.ones((2, 3), np.float32))
        data = good.read_bytes()
        p = Path(d) / "data.npz"
        p.write_bytes(blob if cut % 2 else data[: cut * len(data) // 400] + blob[:8])
        try:
            load_data(str(p)).validated([TensorSpec("input", (1, 3), np.dtype(np.float32))])
        except EdgecompressError:
            pass


# target profiles -----------------------------------------------------------------------------------------
_KEYS = ["name", "description", "arch", "isa", "execution_providers", "threads", "graph_optimization",
         "quantization", "opset", "operators", "pruning", "package", "budgets", "source", "bogus"]
_SUB = ["format", "activation_type", "weight_type", "per_channel", "reduce_range", "min", "max", "round_to",
        "ort_optimization_style", "max_size_mb", "max_p90_latency_ms", "max_accuracy_drop", "bogus"]
_STRINGS = st.one_of(st.sampled_from(["x86_64", "arm64", "qdq", "qoperator", "uint8", "int8", "avx2", "neon",
                                      "CPUExecutionProvider", "Fixed", "Runtime", "all", "t", ""]),
                     st.text(max_size=8))
SCALARS = st.one_of(_STRINGS, st.integers(-5, 300), st.floats(allow_nan=True), st.booleans(),
                    st.lists(_STRINGS, max_size=3), st.lists(st.integers(), max_size=2))
TOMLISH = st.recursive(SCALARS, lambda kids: st.dictionaries(st.sampled_from(_SUB), kids, max_size=4), max_leaves=6)


@SETTINGS
@given(data=st.dictionaries(st.sampled_from(_KEYS), TOMLISH, max_size=8))
def test_target_profile_parsing_raises_only_target_errors(data):
    try:
        p = profile_from_dict(data, origin="prop.toml")
    except EdgecompressError as exc:
        assert str(exc).startswith("prop.toml")
        return
    assert p.opset_min <= p.opset_max
    p.to_dict()


def _shipped_profiles() -> list[dict]:
    import tomllib

    from edgecompress.targets import targets_dir

    return [tomllib.loads(p.read_text()) for p in sorted(targets_dir().glob("*.toml"))]


@st.composite
def mutated(draw, bases, keys, subkeys, values):
    """A valid document with a few keys set to random values, deleted, or added."""
    import copy

    doc = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        table = doc
        subtables = [k for k, v in doc.items() if isinstance(v, dict)]
        if subtables and draw(st.booleans()):
            table = doc[draw(st.sampled_from(subtables))]
            key = draw(st.sampled_from(sorted(table) + subkeys) if table else st.sampled_from(subkeys))
        else:
            key = draw(st.sampled_from(sorted(doc) + keys))
        if key in table and draw(st.integers(0, 3)) == 0:
            del table[key]
        else:
            table[key] = draw(values)
    return doc


@SETTINGS
@given(data=mutated(_shipped_profiles(), _KEYS, _SUB, TOMLISH))
def test_mutated_shipped_profiles_raise_only_target_errors(data):
    try:
        p = profile_from_dict(data, origin="prop.toml")
    except EdgecompressError:
        return
    assert p.opset_min <= p.opset_max


@SETTINGS
@given(text=st.text(alphabet=string.printable + "\x00é[]=\"'", max_size=200))
def test_target_profile_file_raises_only_target_errors(text, tmp_path_factory):
    from edgecompress.targets import load_profile_file

    p = tmp_path_factory.mktemp("t") / "x.toml"
    p.write_text(text)
    try:
        load_profile_file(p)
    except EdgecompressError:
        pass


# recipes -----------------------------------------------------------------------------------------------------
_RECIPE_KEYS = ["target", "model", "data", "train", "distill", "export", "prune", "quantize", "bench", "package",
                "bogus"]
_RECIPE_SUB = ["source", "weights", "calibration", "eval", "train", "val", "ratio", "per_channel", "method",
               "opset", "epochs", "runs", "name", "mode", "criterion", "image", "bogus"]
R_SCALARS = st.one_of(st.sampled_from(["model.onnx", "calib.npz", "nets.py:tiny", "host", "x86_64-avx2", "auto",
                                       "l1", "static", "", "../x", "/etc/passwd", "a:b"]),
                      st.integers(-3, 100), st.floats(allow_nan=True), st.booleans(),
                      st.lists(st.integers(0, 9), max_size=3))
R_VALUES = st.recursive(R_SCALARS, lambda kids: st.dictionaries(st.sampled_from(_RECIPE_SUB), kids, max_size=4),
                        max_leaves=8)


@pytest.fixture(scope="module")
def recipe_dir(world):
    return world.inputs


@SETTINGS
@given(data=st.dictionaries(st.sampled_from(_RECIPE_KEYS), R_VALUES, max_size=6))
def test_recipe_parsing_raises_only_edgecompress_errors(data, recipe_dir):
    try:
        recipe.parse_recipe(data, base_dir=recipe_dir)
    except EdgecompressError:
        pass


def _good_recipes(world) -> list[dict]:
    base = {"model": {"source": str(world.model)}, "data": {"calibration": str(world.calib), "eval": str(world.eval)},
            "quantize": {}, "package": {}}
    torch_base = {"model": {"source": world.teacher}, "data": {"train": str(world.train), "calibration":
                  str(world.calib)}, "export": {}, "prune": {"ratio": 0.5}, "quantize": {}, "package": {}}
    return [base, torch_base, dict(base, target="x86_64-avx2", bench={})]


def test_good_recipes_parse(world):
    """The mutation bases are valid, so mutated recipes reach deep validation (types, files, stage configs)."""
    for doc in _good_recipes(world):
        recipe.parse_recipe(doc, base_dir=world.inputs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
          database=None)
@given(data=st.data())
def test_mutated_recipes_raise_only_edgecompress_errors(data, world):
    doc = data.draw(mutated(_good_recipes(world), _RECIPE_KEYS, _RECIPE_SUB, R_VALUES))
    try:
        recipe.parse_recipe(doc, base_dir=world.inputs)
    except EdgecompressError:
        pass


@SETTINGS
@given(text=st.text(alphabet=string.printable, max_size=300))
def test_recipe_file_raises_only_edgecompress_errors(text, recipe_dir, tmp_path_factory):
    p = tmp_path_factory.mktemp("r") / "recipe.toml"
    p.write_text(text)
    try:
        recipe.load_recipe(p)
    except EdgecompressError:
        pass


# small parsers ------------------------------------------------------------------------------------------------
@SETTINGS
@given(spec=st.text(alphabet=string.ascii_letters + string.digits + ":x,._- \x00", max_size=40))
def test_shape_spec_parsing_raises_only_config_errors(spec):
    from edgecompress.cli.common import parse_shape_spec

    try:
        name, shape, dtype = parse_shape_spec(spec)
    except EdgecompressError:
        return
    assert name and shape
    np.dtype(dtype)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(blob=st.binary(max_size=300), keep=st.integers(0, 2000), flips=st.lists(st.integers(0, 10**6), max_size=4))
def test_load_model_raises_only_model_errors(blob, keep, flips, world):
    from edgecompress.onnxgraph.io import load_model

    data = bytearray(world.model.read_bytes()[:keep] + blob)
    for f in flips:
        if data:
            data[f % len(data)] ^= 0x5A
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        p.write_bytes(bytes(data))
        try:
            load_model(p)
        except EdgecompressError:
            pass
