"""Bias correction in quantize/rounding.py (the empirical bias correction that replaced quantize/bias_correction.py):
the mean output shift a layer's weight quantization causes on its real quantized input moves into its bias.

Single-layer graphs quantized by ONNX Runtime's own quantizer (static QDQ, U8S8 per-channel), run in ORT on
held-out inputs; the input has a large mean, so the weights' rounding error shifts every output channel."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from edgecompress.data import FeedData
from edgecompress.quantize import rounding as R

D_IN, D_OUT, BATCH = 64, 8, 16


def _model(path, op: str, w: np.ndarray, b: np.ndarray | None):
    """x [BATCH, D_IN] -> Gemm(transB=1) (bias optional) or MatMul -> y."""
    if op == "Gemm":
        ins = ["x", "w", "b"] if b is not None else ["x", "w"]
        node = helper.make_node("Gemm", ins, ["y"], name="layer", transB=1)
        inits = [numpy_helper.from_array(w.astype(np.float32), "w")]
    else:
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="layer")
        inits = [numpy_helper.from_array(w.T.astype(np.float32), "w")]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(np.float32), "b"))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, D_IN])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, D_OUT])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _inputs(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (4.0 + 0.5 * rng.normal(size=(n, BATCH, D_IN))).astype(np.float32)  # post-ReLU-like: mean 4


class _Reader(CalibrationDataReader):
    def __init__(self, xs: np.ndarray) -> None:
        self.it = iter([{"x": x} for x in xs])

    def get_next(self):
        return next(self.it, None)


def _quantize(src, dst, calib: np.ndarray):
    quantize_static(str(src), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst


def _run(path, xs: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x})[0] for x in xs])


def _shift(ref, q, xs) -> float:
    """Mean over output channels of |mean output shift| (quantized - fp32) on `xs`."""
    return float(np.abs((_run(q, xs) - _run(ref, xs)).mean(0)).mean())


def _round(tmp_path, src, calib: np.ndarray):
    """rounding.optimize on `src` with its layer inputs read from ORT's quantized model; the new fp32 model
    quantized again by ORT (which reproduces the written grid)."""
    q0 = _quantize(src, tmp_path / "q0.onnx", calib)
    fp32, rep = onnx.load(str(src)), R.RoundingReport()
    layers = R.find_layers(fp32, onnx.load(str(q0)), rep)
    assert [L.node for L in layers] == ["layer"], rep.skipped
    R.collect(onnx.load(str(q0)), layers, FeedData.from_feeds([{"x": x} for x in calib]), threads=1)
    new = R.optimize(fp32, layers, qmax=127, per_channel=True, report=rep)
    onnx.save(new, str(tmp_path / "rounded.onnx"))
    return q0, new, rep, _quantize(tmp_path / "rounded.onnx", tmp_path / "q1.onnx", calib)


def _inits(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def test_bias_absorbs_the_mean_output_shift_on_held_out_inputs(tmp_path):
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(D_OUT, D_IN)), rng.normal(size=D_OUT)
    src = _model(tmp_path / "gemm.onnx", "Gemm", w, b)
    calib, held = _inputs(1, 32), _inputs(2, 32)
    q0, new, rep, q1 = _round(tmp_path, src, calib)
    assert rep.improved == 1 and rep.error_db_after > rep.error_db_before, rep.to_dict()
    b_new = _inits(new)["b"]
    assert np.abs(b_new - b).max() > 1e-3  # the bias moved ...
    # ... by the weights' error on the mean input: (w - v) . E[x] per channel, computed here independently
    v = _inits(new)["w"].astype(np.float64)
    np.testing.assert_allclose(b_new - b, (w - v) @ calib.reshape(-1, D_IN).mean(0), rtol=0.02, atol=2e-3)
    before, after = _shift(src, q0, held), _shift(src, q1, held)
    assert after < 0.1 * before, (before, after)  # measured 0.147 -> 0.0053 (weights alone, no bias: 0.026)


def test_layer_without_bias_gets_one(tmp_path):
    rng = np.random.default_rng(3)
    src = _model(tmp_path / "gemm.onnx", "Gemm", rng.normal(size=(D_OUT, D_IN)), None)
    calib, held = _inputs(4, 32), _inputs(5, 32)
    q0, new, rep, q1 = _round(tmp_path, src, calib)
    node = next(n for n in new.graph.node if n.name == "layer")
    assert rep.improved == 1 and node.input[2] == "layer_bias_rounding"
    assert np.abs(_inits(new)["layer_bias_rounding"]).max() > 1e-3
    assert _shift(src, q1, held) < 0.1 * _shift(src, q0, held)


def test_nothing_to_correct_on_the_grid(tmp_path):
    """Weights already on the int8 grid (round-to-nearest is exact, no mean shift): the bias and the weights stay
    (to float32 precision; the layer may still count as rewritten, its error being float noise either way)."""
    rng = np.random.default_rng(6)
    ints = rng.integers(-127, 128, size=(D_OUT, D_IN))
    ints[:, 0] = 127  # every channel's max |w| maps to 127: ORT's scale reproduces the grid
    w = ints * rng.uniform(0.005, 0.02, size=(D_OUT, 1))
    b = rng.normal(size=D_OUT)
    src = _model(tmp_path / "gemm.onnx", "Gemm", w, b)
    _, new, rep, _ = _round(tmp_path, src, _inputs(7, 16))
    assert rep.layers == 1 and rep.error_db_before > 100, rep.to_dict()  # round-to-nearest: float noise only
    got = _inits(new)
    np.testing.assert_allclose(got["b"], b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["w"], w, rtol=0, atol=1e-6)


def test_skipped_with_too_few_samples_for_the_held_out_check(tmp_path):
    """One calibration sample: no second fold to check a correction on, so none is applied."""
    rng = np.random.default_rng(10)
    w, b = rng.normal(size=(D_OUT, D_IN)), rng.normal(size=D_OUT)
    src = _model(tmp_path / "gemm.onnx", "Gemm", w, b)
    _, new, rep, _ = _round(tmp_path, src, _inputs(11, 1))
    assert rep.improved == 0 and "two folds" in rep.skipped["layer"], rep.to_dict()
    got = _inits(new)
    np.testing.assert_array_equal(got["b"], b.astype(np.float32))
    np.testing.assert_array_equal(got["w"], w.astype(np.float32))


def test_matmul_has_no_bias_to_correct(tmp_path):
    """A MatMul has no bias input: its weights may still be rounded better, but no bias or node is added."""
    rng = np.random.default_rng(8)
    src = _model(tmp_path / "mm.onnx", "MatMul", rng.normal(size=(D_OUT, D_IN)), None)
    calib = _inputs(9, 32)
    _, new, rep, _ = _round(tmp_path, src, calib)
    assert rep.layers == 1
    assert [n.op_type for n in new.graph.node] == ["MatMul"] and list(new.graph.node[0].input) == ["x", "w"]
    assert sorted(_inits(new)) == ["w"]
