"""Streaming calibration: ranges match a direct computation; the MSE-optimal clip trims outliers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecompress.data import FeedData
from edgecompress.quantize.calibration import calibrate, mse_optimal_range


def _matmul_relu(path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
                           helper.make_node("Relu", ["y"], ["z"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path, numpy_helper.to_array(w)


def test_streaming_minmax_matches_numpy(tmp_path):
    path, w = _matmul_relu(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32)
    data = FeedData.from_arrays({"x": x})
    res = calibrate(path, data, "histogram", tmp_path, both=True)
    y = x @ w
    lo, hi = res["minmax"].ranges["y"]
    assert np.isclose(lo, y.min(), atol=1e-5) and np.isclose(hi, y.max(), atol=1e-5)
    assert res["minmax"].ranges["x"] == (float(x.min()), float(x.max()))
    hlo, hhi = res["histogram"].ranges["y"]
    assert lo <= hlo <= 0 <= hhi <= hi
    assert res["histogram"].samples == 40 and res["histogram"].peak_rss_mb > 0


def test_mse_range_clips_rare_outliers():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(1_000_000), [30.0]])  # clipping 1 value costs less than the rounding
    hist, _ = np.histogram(x, bins=2048, range=(x.min(), x.max()))
    a, b = mse_optimal_range(hist, float(x.min()), float(x.max()))
    assert b < 15 and a < -2  # the single outlier at 30 is clipped; the bulk is kept
    assert mse_optimal_range(np.zeros(16, dtype=np.int64), 0.0, 1.0) == (0.0, 1.0)
