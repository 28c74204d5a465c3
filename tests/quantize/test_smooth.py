"""Residual-stream smoothing (edgecompress.quantize.smooth): exact in fp32, and a stream channel that is much larger
than the rest stops dominating the per-tensor int8 range."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from edgecompress.data import FeedData
from edgecompress.fidelity import compare_models
from edgecompress.onnxgraph.extra_outputs import session_with_outputs
from edgecompress.quantize.calibration import FeedReader
from edgecompress.quantize.smooth import smooth_streams
from examples.zoo import MobileNetV2Like

CFG = [(1, 16, 1, 1), (4, 24, 3, 2), (4, 32, 3, 2)]  # two streams with residual adds


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A small MobileNetV2-like net whose stream channel 5 (24-ch stage) is 30x larger, compensated in its readers:
    the function is the original one, the stream has an outlier channel as trained nets do."""
    torch.manual_seed(0)
    m = MobileNetV2Like(num_classes=10, cfg=CFG, last=64).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.running_mean.uniform_(-0.2, 0.2)
        blocks = [b for b in m.features if hasattr(b, "use_res")]
        stage = [b for b in blocks if b.conv[-2].out_channels == 24]
        for b in stage:  # every producer of the stream: the projection conv + BN of each block
            b.conv[-1].weight[5] *= 30
            b.conv[-1].bias[5] *= 30
        readers = [b for b in blocks if b.conv[0].in_channels == 24]
        for b in readers:  # every reader: the next blocks' expansion convs
            b.conv[0].weight[:, 5] /= 30
    f = io.BytesIO()
    torch.onnx.export(m, (torch.zeros(1, 3, 64, 64),), f, dynamo=False, input_names=["input"], output_names=["out"])
    d = tmp_path_factory.mktemp("smooth")
    (d / "m.onnx").write_bytes(f.getvalue())
    rng = np.random.default_rng(0)
    calib = FeedData.from_arrays({"input": rng.standard_normal((32, 3, 64, 64)).astype(np.float32)})
    check = d / "check.npz"
    np.savez(check, input=rng.standard_normal((16, 3, 64, 64)).astype(np.float32))
    return d / "m.onnx", calib, check


def _int8(src, dest, calib):
    quantize_static(str(src), str(dest), FeedReader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dest


def test_smoothing_is_exact_and_shrinks_the_stream_range(planted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src, calib, check = planted
    model = onnx.load(str(src))
    smoothed, res = smooth_streams(model, calib.feeds())
    assert res.streams >= 2 and res.channels >= 24 + 32
    onnx.save(smoothed, str(tmp_path / "s.onnx"))
    assert compare_models(str(src), tmp_path / "s.onnx", str(check)).output("out").metrics["sqnr_db"] > 80
    adds = [n.output[0] for n in model.graph.node if n.op_type == "Add"]

    def ranges(m):
        s = session_with_outputs(m, adds, origin="t")
        outs = [s.run(adds, f) for f in calib.feeds()]
        return [max(float(np.abs(o[i]).max()) for o in outs) for i in range(len(adds))]

    before, after = ranges(model), ranges(smoothed)
    assert max(after) < 0.5 * max(before), (before, after)
    # int8 activations: the outlier no longer eats the stream's range. Measured per channel (each normalized by its
    # own spread, as its readers see it) against each graph's own fp32 stream; ORT keeps the float names in QDQ
    def stream_sqnr(fp, q):
        a = session_with_outputs(fp, adds, origin="fp")
        b = session_with_outputs(onnx.load(str(q)), adds, origin="q", graph_optimization="disable")
        sig = noise = 0.0
        for f in calib.feeds():
            for r, g in zip(a.run(adds, f), b.run(adds, f), strict=True):
                sd = r.std(axis=(0, 2, 3), keepdims=True) + 1e-9
                sig += float(((r / sd) ** 2).sum())
                noise += float((((r - g) / sd) ** 2).sum())
        return 10 * np.log10(sig / noise)

    plain = stream_sqnr(model, _int8(src, tmp_path / "q0.onnx", calib))
    smooth = stream_sqnr(smoothed, _int8(tmp_path / "s.onnx", tmp_path / "q1.onnx", calib))
    assert smooth > plain + 6, (plain, smooth)


def test_a_stream_read_by_something_else_is_left_alone(tmp_path):
    """A stream that reaches a graph output cannot be rescaled (its consumers are not all convs)."""
    torch.manual_seed(0)
    m = MobileNetV2Like(num_classes=10, cfg=CFG, last=64).eval()
    f = io.BytesIO()
    torch.onnx.export(m.features[:6], (torch.zeros(1, 3, 32, 32),), f, dynamo=False, input_names=["input"],
                      output_names=["out"])
    model = onnx.load_from_string(f.getvalue())
    calib = FeedData.from_arrays({"input": np.ones((2, 3, 32, 32), np.float32)})
    out, res = smooth_streams(model, calib.feeds())
    assert res.streams == 0 and res.skipped == {"stream reaches a graph output": 1}
    assert out.SerializeToString() == onnx.load_from_string(f.getvalue()).SerializeToString()
