"""Weight-only low-bit and fp16 test models, made with ONNX Runtime's own tools from small onnx.helper graphs.

* `mlp_fp32()`: x[1,8,64] -> MatMul(64x64) -> Add -> LayerNormalization -> Relu -> MatMul(64x32) -> y[1,8,32]
* `embed_fp32()`: ids[1,8] (int64) -> Gather(table 128x64) -> MatMul(64x32) -> y[1,8,32] (no normalization between:
  an error in the table's values shows in y)
* `nbits(model, bits=4, block_size=32, gather=False)`: `MatMulNBitsQuantizer` (com.microsoft.MatMulNBits, and
  com.microsoft.GatherBlockQuantized for Gather when `gather`)
* `fp16(model)`: `onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`
  (float16 initializers, Cast nodes at the graph edges), topologically sorted as ORT's own save path does

Importable from any test folder (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQ, HIDDEN, OUT, VOCAB = 8, 64, 32, 128
# MatMul MACs of the fp32 graphs (M x K x N per MatMul)
MLP_MACS = SEQ * HIDDEN * HIDDEN + SEQ * HIDDEN * OUT
EMBED_MACS = SEQ * HIDDEN * OUT


def _w(name: str, shape, seed: int) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def _layernorm(x: str, y: str) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    node = helper.make_node("LayerNormalization", [x, "ln_scale", "ln_bias"], [y], name="ln", axis=-1, epsilon=1e-5)
    inits = [numpy_helper.from_array(np.linspace(0.5, 1.5, HIDDEN, dtype=np.float32), "ln_scale"),
             numpy_helper.from_array(np.linspace(-0.1, 0.1, HIDDEN, dtype=np.float32), "ln_bias")]
    return node, inits


def mlp_fp32() -> onnx.ModelProto:
    ln, ln_inits = _layernorm("h", "n")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
             helper.make_node("Add", ["m1", "b1"], ["h"], name="bias1"),
             ln,
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    inits = [_w("w1", (HIDDEN, HIDDEN), 0), _w("b1", (HIDDEN,), 1), _w("w2", (HIDDEN, OUT), 2), *ln_inits]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, HIDDEN])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, OUT])], inits)


def embed_fp32() -> onnx.ModelProto:
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed", axis=0),
             helper.make_node("MatMul", ["e", "w"], ["y"], name="proj")]
    inits = [_w("table", (VOCAB, HIDDEN), 3), _w("w", (HIDDEN, OUT), 4)]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, SEQ])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, OUT])], inits)


def nbits(model: onnx.ModelProto, *, bits: int = 4, block_size: int = 32, gather: bool = False,
          symmetric: bool = True) -> onnx.ModelProto:
    """The model with its MatMul weights (and Gather tables when `gather`: int4 when symmetric, else uint4 with
    zero points) block-quantized by ORT."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    algo = None
    if gather:
        algo = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, accuracy_level=4, bits=bits,
                                            op_types_to_quantize=("MatMul", "Gather"),
                                            quant_axes=(("MatMul", 0), ("Gather", 1)))
    q = MatMulNBitsQuantizer(onnx.ModelProto.FromString(model.SerializeToString()), bits=bits,
                             block_size=block_size, is_symmetric=symmetric, accuracy_level=4, algo_config=algo)
    q.process()
    return q.model.model


def fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    out = convert_float_to_float16(onnx.ModelProto.FromString(model.SerializeToString()), keep_io_types=True)
    # the converter appends the edge Casts at the end of the node list; ORT's own save path
    # (OnnxModel.save_model_to_file) sorts the graph, without which the ONNX checker rejects the file
    OnnxModel.graph_topological_sort(out.graph)
    return out


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def write_models(folder: Path) -> dict[str, Path]:
    """fp32 / int4 / int8 / fp16 MLP and fp32 / int4 (MatMul + Gather; symmetric int4 and asymmetric uint4 tables)
    embedding models in `folder`."""
    import logging

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    mlp, emb = mlp_fp32(), embed_fp32()
    return {"mlp_fp32": save(mlp, folder / "mlp_fp32.onnx"),
            "mlp_int4": save(nbits(mlp, bits=4), folder / "mlp_int4.onnx"),
            "mlp_int8": save(nbits(mlp, bits=8), folder / "mlp_int8.onnx"),
            "mlp_fp16": save(fp16(mlp), folder / "mlp_fp16.onnx"),
            "embed_fp32": save(emb, folder / "embed_fp32.onnx"),
            "embed_int4": save(nbits(emb, bits=4, gather=True), folder / "embed_int4.onnx"),
            "embed_uint4": save(nbits(emb, bits=4, gather=True, symmetric=False), folder / "embed_uint4.onnx")}


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Output 0 of every sample of `feeds` (axis 0) through a CPU session of `path`, stacked."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name, x = next(iter(feeds.items()))
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mlp_feeds(n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """{"x": [n,8,64]} float32, a .npz feed set (axis 0 indexes samples, each fed as [1,8,64])."""
    return {"x": np.random.default_rng(seed).standard_normal((n, SEQ, HIDDEN)).astype(np.float32)}


def embed_feeds(n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(seed).integers(0, VOCAB, (n, SEQ)).astype(np.int64)}
