"""Output-error weight rounding (quantize/rounding.py): patches match ORT's Conv, the fit never loses to
round-to-nearest on its own moments, ORT's quantizer reproduces the written grid exactly, and on a trained net
the rounded int8 model is closer to fp32 than ORT's round-to-nearest one on held-out data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from quantize_helpers import export, train
from torch import nn

from edgecompress.data import load_data
from edgecompress.quantize import calibration as calib_mod
from edgecompress.quantize import rounding as R
from edgecompress.quantize.ortquant import Candidate, run_quantizer
from edgecompress.quantize.preprocess import prepare


def _outputs(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _sqnr(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum()))


@pytest.mark.parametrize("groups,stride,pad,dil", [(1, 1, 1, 1), (4, 2, 1, 1), (8, 1, 2, 2), (2, 2, 0, 1)])
def test_patches_times_weight_is_ortss_conv(tmp_path, groups, stride, pad, dil):
    torch.manual_seed(groups)
    conv = nn.Conv2d(8, 8, 3, stride, pad, dilation=dil, groups=groups)
    p = export(nn.Sequential(conv), tmp_path / "c.onnx", shape=(1, 8, 13, 11))
    x = np.random.default_rng(0).normal(size=(2, 8, 13, 11)).astype(np.float32)
    y = np.concatenate([_outputs(p, x[i:i + 1]) for i in range(2)])
    m = onnx.load(str(p))
    layers = R.find_layers(m, m, R.RoundingReport())
    assert layers == []  # no quantized twin: nothing to round
    node = next(n for n in m.graph.node if n.op_type == "Conv")
    w = next(numpy_helper.to_array(t) for t in m.graph.initializer if t.name == node.input[1])
    b = next(numpy_helper.to_array(t) for t in m.graph.initializer if t.name == node.input[2])
    L = R.Layer("c", "Conv", "x", node.input[1], node.input[2], tuple(w.shape), groups, (3, 3),
                (stride, stride), (pad,) * 4, (dil, dil))
    pt = R.patches(L, x, None)  # (g, N*P, d)
    got = np.matmul(pt, np.swapaxes(R._rows(L, w.astype(np.float64)), 1, 2))  # (g, N*P, rows)
    want = (y - b[None, :, None, None]).reshape(2, groups, 8 // groups, -1).transpose(1, 0, 3, 2)
    np.testing.assert_allclose(got, want.reshape(got.shape), atol=1e-4)


def test_fit_never_loses_to_round_to_nearest_and_keeps_the_scale():
    rng = np.random.default_rng(1)
    g, r, d, n = 3, 5, 12, 400
    w = rng.normal(size=(g, r, d))
    w[0, 0, 3] = 6.0  # an outlier weight: clipping that channel can pay
    x = rng.normal(size=(g, n, d)) * np.linspace(0.2, 2.0, d)
    xq = x + rng.normal(scale=0.05, size=x.shape)
    lay = R.Layer("l", "Gemm", "xq", "w", None, (d, r), 1)
    R.accumulate(lay, 0, xq.astype(np.float32))
    m = lay.moments[0]
    v, delta, _ = R.fit(m, w, 127, per_channel=True)
    rtn = R._rtn(w, 127, True)
    zero = np.zeros((g, r))
    assert R.row_loss(m, w, v, delta).sum() < R.row_loss(m, w, rtn, zero).sum()
    scale = np.abs(v).max(axis=2, keepdims=True) / 127  # ORT's rule, applied to the written weights
    ints = v / scale
    np.testing.assert_allclose(ints, np.round(ints), atol=1e-6)  # on the grid ORT will recompute
    assert np.abs(np.round(ints)).max() <= 127


def _trained_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.ReLU(),
                        nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 14 * 14, 10))
    return train(net, n=2000, epochs=1)


def test_rounded_int8_is_closer_to_fp32_on_held_out_data(mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = export(_trained_net(), tmp_path / "net.onnx")
    pre = prepare(onnx.load(str(src)), src, tmp_path)
    calib = load_data(mnist_small["calib"])
    cache = calib_mod.calibrate(pre.path, calib, "minmax", tmp_path, None)["minmax"].write_cache(tmp_path / "r.json")
    cand = Candidate("static", "qdq", "uint8", "int8", True, False, "minmax")
    q0 = run_quantizer(pre.path, tmp_path / "q0.onnx", cand, cache)
    fp32 = onnx.load(str(pre.path))
    rep = R.RoundingReport()
    layers = R.find_layers(fp32, onnx.load(str(q0)), rep)
    assert len(layers) == 4, rep.skipped
    R.collect(onnx.load(str(q0)), layers, calib, threads=1)
    new = R.optimize(fp32, layers, qmax=127, per_channel=True, report=rep)
    assert rep.improved >= 1 and rep.error_db_after > rep.error_db_before, rep.to_dict()
    onnx.save(new, str(tmp_path / "rounded.onnx"))
    q1 = run_quantizer(tmp_path / "rounded.onnx", tmp_path / "q1.onnx", cand, cache)
    # ORT's quantizer reproduced the written grid: dequantized weights == the rounded fp32 weights
    qm = onnx.load(str(q1))
    qi = {t.name: numpy_helper.to_array(t) for t in qm.graph.initializer}
    written = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
    by_out = {o: n for n in qm.graph.node for o in n.output}
    checked = 0
    for n in qm.graph.node:
        dq = by_out.get(n.input[1]) if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        ints, scale = qi[dq.input[0]].astype(np.float64), qi[dq.input[1]].astype(np.float64)
        axis = 0 if n.op_type == "Conv" else int(next((a.i for a in dq.attribute if a.name == "axis"), 1))
        shape = [1] * ints.ndim
        shape[axis] = -1
        orig = next(L.weight for L in layers if L.weight + "_quantized" == dq.input[0] or L.weight in dq.input[0])
        np.testing.assert_allclose(ints * scale.reshape(shape), written[orig], rtol=0, atol=1e-6)
        checked += 1
    assert checked == 4
    x = np.load(mnist_small["eval"])["input"][:200]
    ref = _outputs(src, x)
    assert _sqnr(ref, _outputs(q1, x)) > _sqnr(ref, _outputs(q0, x))
