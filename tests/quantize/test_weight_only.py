"""Block-wise weight-only quantization (edgecompress/quantize/weight_only.py, lowbit_graph.py): the packed
MatMulNBits / GatherBlockQuantized layouts, run in ONNX Runtime, compute exactly with the dequantized weights,
and the activation-aware algorithms lower a real layer's output error."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from quantize_helpers import DATA

from edgecompress.quantize import weight_only as wo
from edgecompress.quantize.lowbit_graph import Table, gather_node


def _run(node, inits, inp: str, k, feed, dtype=TensorProto.FLOAT):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(inp, dtype, [None, k] if k else [None])],
                          [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {inp: feed})[0]


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize(("k", "n", "block"), [(100, 24, 32), (96, 10, 32), (64, 16, 16)])
def test_matmulnbits_layout_matches_dequantized_weights(bits, sym, k, n, block):
    """K not a multiple of the block (padding) and an odd number of blocks (packed zero points) included."""
    rng = np.random.default_rng(k + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((16, k)).astype(np.float32)
    bq = wo.quantize_rtn(w, bits, block, sym)
    node, inits = wo.matmulnbits_node("mm", "a", "y", bq, n, accuracy_level=0)
    got = _run(node, inits, "a", k, x)
    ref = x @ bq.dequantize()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    # and the quantization itself is close to the float weights (4 bits: ~1 % of the output energy)
    assert np.linalg.norm(ref - x @ w) / np.linalg.norm(x @ w) < (0.15 if bits == 4 else 0.01)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("sym", [True, False])
def test_gather_block_quantized_layout(bits, sym):
    rng = np.random.default_rng(3)
    table = rng.standard_normal((50, 96)).astype(np.float32)  # 96 / 32 = 3 blocks: odd, packed zero points
    bq = wo.quantize_rtn(table.T, bits, 32, sym, clip=True)
    node, inits = gather_node("g", Table("g", "ids", "y", table), bq)
    ids = rng.integers(0, 50, 20).astype(np.int64)
    got = _run(node, inits, "ids", None, ids, TensorProto.INT64)
    assert np.array_equal(got, bq.dequantize().T[ids])


def test_bias_input_of_gemm_layers():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    from onnx import numpy_helper

    bq = wo.quantize_rtn(w, 4, 32, False)
    node, inits = wo.matmulnbits_node("mm", "a", "y", bq, 8, accuracy_level=0, bias="b")
    x = rng.standard_normal((4, 64)).astype(np.float32)
    got = _run(node, inits + [numpy_helper.from_array(bias, "b")], "a", 64, x)
    assert np.allclose(got, x @ bq.dequantize() + bias, atol=1e-4)


def test_activation_aware_rounding_lowers_a_real_layers_output_error():
    """The first layer of an MNIST MLP sees real pixels (strongly correlated, many always-zero): clip (weighted
    by E[x^2]) beats plain rounding, and GPTQ (full Hessian) beats both, on held-out images."""
    from quantize_helpers import train

    from examples.zoo import MLP

    net = train(MLP(hidden=64), n=2000, epochs=1)
    w = net.fc1.weight.detach().numpy().T.copy()  # [784, 64]
    cal = np.load(DATA / "mnist_calibration.npz")["input"].reshape(-1, 784).astype(np.float64)
    held = np.load(DATA / "mnist_eval.npz")["input"][:500].reshape(-1, 784).astype(np.float64)
    h_cal, h_held = cal.T @ cal / len(cal), held.T @ held / len(held)
    err = {}
    for algo in ("rtn", "clip", "gptq"):
        bq = (wo.quantize_gptq(w, h_cal, 4, 32, False) if algo == "gptq"
              else wo.quantize_rtn(w, 4, 32, False, hdiag=np.diag(h_cal), clip=algo == "clip"))
        err[algo] = wo.output_error(w, bq, h_held)
    assert err["gptq"] < err["clip"] < err["rtn"], err
    assert err["gptq"] < 0.7 * err["rtn"], err


def test_packed_size_is_what_the_file_holds():
    bq = wo.quantize_rtn(np.ones((256, 128), np.float32), 4, 32, False)
    b, scales, zp = wo.pack(bq)
    assert bq.nbytes == b.nbytes + scales.nbytes + zp.nbytes
    assert b.nbytes == 256 * 128 // 2


def test_layer_statistics_stream_in_bounded_memory(tmp_path):
    """GPTQ's E[x x^T] is accumulated sample by sample: 8x more calibration samples take no more memory."""
    import tracemalloc

    import onnx
    import torch
    from quantize_helpers import export

    from edgecompress.data import load_data
    from edgecompress.quantize.lowbit_graph import find_layers, hessians
    from examples.zoo import MLP

    torch.manual_seed(0)
    path = export(MLP(hidden=128), tmp_path / "mlp.onnx")
    model = onnx.load(str(path))
    layers, _ = find_layers(model)
    cal = np.load(DATA / "mnist_calibration.npz")["input"]
    peaks, results = [], []
    for n in (32, 256):
        np.savez(tmp_path / f"c{n}.npz", input=cal[:n])
        data = load_data(tmp_path / f"c{n}.npz")
        tracemalloc.start()
        h, stats = hessians(model, layers, data, threads=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        results.append(h)
        assert stats["rows"] == n
    assert peaks[1] < 1.3 * peaks[0], peaks
    x = cal[:256].reshape(256, -1).astype(np.float64)
    assert any(v.shape == (784, 784) and np.allclose(v, x.T @ x / 256) for v in results[1].values())
