"""MatMul-input smoothing (quantize/smooth_inputs.py): exact in fp32, only the MatMul readers see the smoothed
tensor, and dynamic int8 of the smoothed model is closer to fp32 when the input has outlier channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import quantize_dynamic
from quantize_helpers import train
from torch import nn

from edgecompress.quantize.smooth_inputs import smooth_matmul_inputs

DATA = Path(__file__).resolve().parents[2] / "calibration_data"


class Block(nn.Module):
    """LayerNorm -> two Linear readers (like Q and V) + a residual Add beside them, on flattened MNIST rows."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(28, 32)
        self.ln = nn.LayerNorm(32)
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(self.inp(x.reshape(x.shape[0], 28, 28)))
        y = torch.relu(self.a(h)) + self.b(h) + h
        return self.out(y.mean(1))


def _model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = train(Block(), n=1500, epochs=1)
    with torch.no_grad():  # outlier channels, as transformers have them after LayerNorm
        net.ln.weight[[3, 17]] *= 40.0
        net.ln.bias[[3, 17]] *= 40.0
        net.a.weight[:, [3, 17]] /= 40.0
        net.b.weight[:, [3, 17]] /= 40.0
    p = tmp_path / "block.onnx"
    torch.onnx.export(net.eval(), torch.zeros(1, 1, 28, 28), str(p), input_names=["input"], output_names=["logits"], dynamo=False,
                      opset_version=17)
    return p


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def _sqnr(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum()))


def test_smoothing_is_exact_and_helps_dynamic_int8(tmp_path):
    src = _model(tmp_path)
    cal = np.load(DATA / "mnist_calibration.npz")["input"][:64]
    x = np.load(DATA / "mnist_eval.npz")["input"][:200]
    m = onnx.load(str(src))
    sm, res = smooth_matmul_inputs(m, ({"input": cal[i:i + 1]} for i in range(len(cal))))
    assert res.changed and res.layers >= 3, res
    onnx.checker.check_model(sm)
    p = tmp_path / "smoothed.onnx"
    onnx.save(sm, str(p))
    ref = _run(src, x)
    np.testing.assert_allclose(_run(p, x), ref, rtol=1e-4, atol=1e-4)  # the function is unchanged
    muls = [n for n in sm.graph.node if n.name.endswith("_smooth")]
    assert muls
    readers = {n.op_type for n in sm.graph.node for mul in muls if mul.output[0] in n.input}
    assert readers and readers <= {"MatMul", "Gemm"}, readers
    ln_out = next(n.output[0] for n in sm.graph.node if n.op_type == "LayerNormalization")
    assert any(n.op_type == "Add" and ln_out in n.input for n in sm.graph.node)  # the residual reads X itself
    quantize_dynamic(str(src), str(tmp_path / "plain.int8.onnx"), per_channel=True)
    quantize_dynamic(str(p), str(tmp_path / "smooth.int8.onnx"), per_channel=True)
    plain = _sqnr(ref, _run(tmp_path / "plain.int8.onnx", x))
    smooth = _sqnr(ref, _run(tmp_path / "smooth.int8.onnx", x))
    assert smooth > plain + 1.0, (plain, smooth)
    print(f"dynamic int8 SQNR: plain {plain:.1f} dB, smoothed {smooth:.1f} dB")
    assert onnx.load(str(src)).SerializeToString() == m.SerializeToString()  # the input model is left alone
