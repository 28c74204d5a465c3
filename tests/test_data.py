"""Feed data: every format of edgecompress.data, validation against model inputs, stable content hash."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from edgecompress.data import FeedData, ImageSpec, TensorSpec, load_data, random_feeds
from edgecompress.errors import ConfigError, DataError

IMG = [TensorSpec("input", (1, 1, 28, 28), np.dtype(np.float32))]
F32 = np.float32


def _arr(n=4, shape=(1, 28, 28), seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(F32)


# ---------------------------------------------------------------------------------------------------- formats

def test_one_npz_with_labels(tmp_path):
    np.savez(tmp_path / "d.npz", input=_arr(5), labels=np.arange(5))
    fd = load_data(tmp_path / "d.npz")
    assert fd.n == 5 and list(fd.labels) == [0, 1, 2, 3, 4]
    feeds = fd.feeds()
    assert feeds[0]["input"].shape == (1, 1, 28, 28)
    assert fd.validated(IMG).n == 5
    assert fd.stacked()["input"].shape == (5, 1, 28, 28)
    assert [b["input"].shape[0] for b in fd.batches(2)] == [2, 2, 1]


def test_shipped_data_validates(data_dir):
    for name in ("mnist_calibration", "digits_eval"):
        fd = load_data(data_dir / f"{name}.npz")
        assert fd.n > 0 and fd.labels is not None and len(fd.labels) == fd.n
        x = fd.feeds()[0]["input"]
        assert x.dtype == F32 and x.ndim == 4
        spec = [TensorSpec("input", x.shape, np.dtype(F32))]
        assert fd.head(8).validated(spec).n == 8


def test_npz_folder_variable_shapes(tmp_path):
    for i, seq in enumerate((3, 5, 9)):
        np.savez(tmp_path / f"{i:02d}.npz", ids=np.arange(seq, dtype=np.int64)[None], labels=np.array(i))
    fd = load_data(tmp_path)
    assert fd.n == 3 and list(fd.labels) == [0, 1, 2]
    spec = [TensorSpec("ids", (1, "seq"), np.dtype(np.int64))]
    assert [f["ids"].shape[1] for f in fd.validated(spec)] == [3, 5, 9]
    with pytest.raises(DataError, match="cannot be stacked"):
        fd.stacked()


def test_npz_folder_labels_in_some_files_only(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((1, 2), F32), labels=np.array(1))
    np.savez(tmp_path / "b.npz", x=np.zeros((1, 2), F32))
    with pytest.raises(DataError, match="present in some files"):
        load_data(tmp_path)


def test_image_folder_with_classes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    spec = ImageSpec(size=(32, 24))
    fd = load_data(tmp_path, image=spec)
    assert fd.n == 4 and list(fd.labels) == [0, 0, 1, 1]
    x = fd.feeds()[0]["input"]
    assert x.shape == (1, 3, 32, 24) and x.dtype == F32
    gray = load_data(tmp_path, image=ImageSpec(size=(28, 28), grayscale=True, mean=(0.5,), std=(0.5,),
                                               layout="NHWC")).feeds()[0]["input"]
    assert gray.shape == (1, 28, 28, 1) and -1.01 <= gray.min() and gray.max() <= 1.01
    bgr = load_data(tmp_path, image=ImageSpec(size=(32, 24), channel_order="BGR")).feeds()[0]["input"]
    # channel 0 of BGR is the blue channel (channel 2 of RGB), normalized with mean[0]/std[0]
    np.testing.assert_allclose(bgr[0, 0] * 0.229 + 0.485, x[0, 2] * 0.225 + 0.406, atol=1e-5)


def test_image_folder_unreadable_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        load_data(tmp_path).feeds()


@pytest.mark.parametrize("kw,match", [
    ({"size": (0, 3)}, "image.size"), ({"layout": "CHW"}, "image.layout"), ({"channel_order": "RGBA"},
                                                                            "image.channel_order"),
    ({"mean": (0.1, 0.2)}, "image.mean"), ({"std": (0.0,)}, "image.std"),
])
def test_image_spec_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        ImageSpec(**kw)


def test_entry_point_module_and_file(tmp_path, monkeypatch):
    src = textwrap.dedent("""
        import numpy as np
        def feeds():
            for i in range(3):
                yield {"input": np.full((1, 1, 28, 28), i, np.float32), "labels": i}
        def not_iterable():
            return 5
        def not_dicts():
            return [1, 2]
        def some_labels():
            return [{"input": np.zeros((1, 1, 28, 28), np.float32), "labels": 1},
                    {"input": np.zeros((1, 1, 28, 28), np.float32)}]
    """)
    (tmp_path / "my_feeds.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    fd = load_data("my_feeds:feeds")
    assert fd.n == 3 and list(fd.labels) == [0, 1, 2] and fd.validated(IMG).n == 3
    assert load_data(f"{tmp_path}/my_feeds.py:feeds").n == 3
    with pytest.raises(DataError, match="iterable"):
        load_data("my_feeds:not_iterable")
    with pytest.raises(DataError, match="item 0 is int"):
        load_data("my_feeds:not_dicts")
    with pytest.raises(DataError, match="given for 1 of 2"):
        load_data("my_feeds:some_labels")
    with pytest.raises(DataError, match="no callable 'absent'"):
        load_data("my_feeds:absent")
    with pytest.raises(DataError, match="cannot import"):
        load_data("no_such_module_xyz:feeds")
    sys.modules.pop("my_feeds", None)


def test_unsupported_and_missing_sources(tmp_path):
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported file type .csv"):
        load_data(tmp_path / "x.csv")
    with pytest.raises(DataError, match="not found"):
        load_data(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="no .npz files and no images"):
        load_data(tmp_path)
    with pytest.raises(DataError, match="no calibration data given"):
        load_data(None, what="calibration data")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(tmp_path / "corrupt.npz")


def test_pickled_object_arrays_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", input=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="object arrays and pickles are refused"):
        load_data(tmp_path / "obj.npz")


# ------------------------------------------------------------------------------------------------- validation

def _npz(tmp_path, name="d.npz", **arrays):
    np.savez(tmp_path / name, **arrays)
    return load_data(tmp_path / name)


TWO = [TensorSpec("a", (1, 4), np.dtype(F32)), TensorSpec("b", ("batch", 4), np.dtype(F32))]


@pytest.mark.parametrize("arrays,specs,match", [
    ({"a": np.zeros((2, 4), F32), "c": np.zeros((2, 4), F32)}, TWO, r"expected \['a', 'b'\].*missing \['b'\].*unexpected \['c'\]"),
    ({"a": np.zeros((2, 4), F32)}, TWO, r"missing \['b'\]"),
    ({"input": _arr(2, (28, 28))}, IMG, "rank 3 .*expected rank 4"),
    ({"input": _arr(2, (1, 28, 27))}, IMG, r"axis 3: 27 != 28"),
    ({"input": _arr(2, (3, 28, 28))}, IMG, r"axis 1: 3 != 1"),
    ({"input": np.zeros((2, 1, 28, 28), np.int64)}, IMG, "dtype int64, expected float32"),
    ({"input": np.zeros((2, 1, 28, 28), bool)}, IMG, "dtype bool, expected float32"),
    ({"input": np.full((2, 1, 28, 28), np.nan, F32)}, IMG, "contains NaN"),
    ({"input": np.full((2, 1, 28, 28), np.inf, F32)}, IMG, "contains Inf"),
    ({"input": np.zeros((2, 1, 0, 28), F32)}, [TensorSpec("input", (1, 1, "h", 28), np.dtype(F32))], "is empty"),
])
def test_validation_table(tmp_path, arrays, specs, match):
    fd = _npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=match):
        fd.validated(specs)


def test_validation_casts_same_kind_and_renames_single_input(tmp_path):
    fd = _npz(tmp_path, pixels=np.zeros((2, 1, 28, 28), np.float64))
    v = fd.validated(IMG)
    feed = v.feeds()[0]
    assert list(feed) == ["input"] and feed["input"].dtype == F32
    assert any("cast to float32" in n for n in v.notes) and any("'pixels'" in n for n in v.notes)
    ids = _npz(tmp_path, "i.npz", ids=np.zeros((2, 1, 5), np.int32))
    assert ids.validated([TensorSpec("ids", (1, 1, "s"), np.dtype(np.int64))]).feeds()[0]["ids"].dtype == np.int64


def test_an_empty_dynamic_axis_beside_real_data_is_accepted():
    """An empty KV cache (dynamic length 0) is data beside the tokens; the same cache alone is not."""
    specs = [TensorSpec("ids", (1, "seq"), np.dtype(np.int64)), TensorSpec("past", (1, 2, "past", 4), np.dtype(F32))]
    ok = FeedData.from_arrays({"ids": np.ones((3, 5), np.int64), "past": np.zeros((3, 2, 0, 4), F32)})
    assert len(list(ok.validated(specs))) == 3
    both_empty = FeedData.from_arrays({"ids": np.ones((3, 0), np.int64), "past": np.zeros((3, 2, 0, 4), F32)})
    with pytest.raises(DataError, match="is empty"):
        list(both_empty.validated(specs))
    static = [TensorSpec("ids", (1, "seq"), np.dtype(np.int64)), TensorSpec("past", (1, 2, 0, 4), np.dtype(F32))]
    assert len(list(ok.validated(static))) == 3  # a declared 0 matches


def test_empty_and_labels_length(tmp_path):
    with pytest.raises(DataError, match="empty"):
        _npz(tmp_path, input=np.zeros((0, 1, 28, 28), F32))
    with pytest.raises(DataError, match="'labels' has 3 entries, expected 2"):
        _npz(tmp_path, "l.npz", input=np.zeros((2, 1, 28, 28), F32), labels=np.arange(3))
    with pytest.raises(DataError, match="disagree on the number of samples"):
        _npz(tmp_path, "m.npz", a=np.zeros((2, 4), F32), b=np.zeros((3, 4), F32))
    with pytest.raises(DataError, match="empty: expected at least one sample"):
        FeedData.from_feeds([]).validated(IMG)
    with pytest.raises(DataError, match="no input arrays"):
        _npz(tmp_path, "o.npz", labels=np.arange(3))


# -------------------------------------------------------------------------------------------------------- hash

def test_content_hash_stable_and_sensitive(tmp_path):
    x, y = _arr(4), np.arange(4)
    np.savez(tmp_path / "a.npz", input=x, labels=y)
    np.savez_compressed(tmp_path / "b.npz", labels=y, input=x)
    h = load_data(tmp_path / "a.npz").content_hash()
    assert h == load_data(tmp_path / "a.npz").content_hash() == load_data(tmp_path / "b.npz").content_hash()
    assert h == FeedData.from_arrays({"input": x}, labels=y).content_hash()
    x2 = x.copy()
    x2[3, 0, 5, 5] += 1e-3
    assert FeedData.from_arrays({"input": x2}, labels=y).content_hash() != h
    assert FeedData.from_arrays({"input": x}, labels=y[::-1].copy()).content_hash() != h
    assert FeedData.from_arrays({"input": x}).content_hash() != h
    assert FeedData.from_arrays({"input": x.astype(np.float64)}, labels=y).content_hash() != h
    assert len(h) == 64


def test_split_head_take_random(tmp_path):
    fd = FeedData.from_arrays({"input": _arr(10)}, labels=np.arange(10))
    a, b = fd.split(0.3, seed=1)
    assert (a.n, b.n) == (7, 3) and sorted(list(a.labels) + list(b.labels)) == list(range(10))
    a2, b2 = fd.split(0.3, seed=1)
    assert a2.content_hash() == a.content_hash()
    assert fd.head(3).n == 3 and list(fd.take([9, 0]).labels) == [9, 0]
    with pytest.raises(ConfigError, match="fraction"):
        fd.split(1.5)
    r = random_feeds([TensorSpec("x", ("b", 3), np.dtype(F32)), TensorSpec("i", (1, "s"), np.dtype(np.int64))], 2)
    assert r.feeds()[0]["x"].shape == (1, 3) and r.feeds()[0]["i"].shape == (1, 8)
    assert r.content_hash() == random_feeds([TensorSpec("x", ("b", 3), np.dtype(F32)),
                                             TensorSpec("i", (1, "s"), np.dtype(np.int64))], 2).content_hash()
