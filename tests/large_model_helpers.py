"""A > 2 GiB ONNX model with external data, built cheaply (streamed to disk in chunks, never held whole).

An MLP  x[1, 1024] -> fc1 (1024x16384) -> Relu -> fc2 (16384x16384) -> Relu -> fc3 (16384x16384) -> Relu ->
fc4 (16384x64) -> y[1, 64]: 554.7 M float32 weights (2.22 GB), He-scaled seeded Gaussian weights, so the output
is a real function of the input (a random-feature regression head). The first `DEAD` hidden units of fc1 have
near-zero weights and a negative bias (dead ReLU units, as a trained net has): a structured pattern the pruner
finds by weight norm, so pruning them is (numerically) lossless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

D_IN, HIDDEN, D_OUT = 1024, 16384, 64
DEAD = 512  # dead hidden units of fc1 (1/32 of them)
LAYERS = (("fc1", D_IN, HIDDEN), ("fc2", HIDDEN, HIDDEN), ("fc3", HIDDEN, HIDDEN), ("fc4", HIDDEN, D_OUT))
DATA_NAME = "big.onnx.data"
ROWS = 1024  # rows generated per chunk (64 MiB for a 16384-wide weight)


def _external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    tensor.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = tensor.external_data.add()
        e.key, e.value = k, v


def write_big_mlp(folder: Path, seed: int = 0) -> Path:
    """Write big.onnx + big.onnx.data into `folder`; returns the model path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    inits: list[TensorProto] = []
    nodes = []
    offset = 0
    with open(folder / DATA_NAME, "wb") as f:
        for name, fin, fout in LAYERS:
            w = TensorProto(name=f"{name}.weight", data_type=TensorProto.FLOAT, dims=[fin, fout])
            length = fin * fout * 4
            _external(w, DATA_NAME, offset, length)
            for start in range(0, fin, ROWS):
                rows = min(ROWS, fin - start)
                chunk = rng.standard_normal((rows, fout), dtype=np.float32)
                chunk *= np.float32(np.sqrt(2.0 / fin) if name != "fc4" else np.sqrt(1.0 / fin))
                if name == "fc1":
                    chunk[:, :DEAD] *= np.float32(1e-4)
                f.write(chunk.tobytes())
            offset += length
            pad = (-offset) % 4096  # onnx's own writer aligns tensors too
            f.write(b"\0" * pad)
            offset += pad
            bias = rng.standard_normal(fout).astype(np.float32) * np.float32(0.05)
            if name == "fc1":
                bias[:DEAD] = -1.0
            inits += [w, onnx.numpy_helper.from_array(bias, f"{name}.bias")]
            src = "x" if name == "fc1" else f"{LAYERS[[n for n, *_ in LAYERS].index(name) - 1][0]}_act"
            nodes.append(helper.make_node("MatMul", [src, f"{name}.weight"], [f"{name}_mm"], name=f"{name}/MatMul"))
            last = name == "fc4"
            nodes.append(helper.make_node("Add", [f"{name}_mm", f"{name}.bias"], ["y" if last else f"{name}_out"],
                                          name=f"{name}/Add"))
            if not last:
                nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_act"], name=f"{name}/Relu"))
    graph = helper.make_graph(nodes, "big_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, D_IN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, D_OUT])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgecompress-tests")
    model.ir_version = 8
    path = folder / "big.onnx"
    path.write_bytes(model.SerializeToString())  # only the graph: the weights are in big.onnx.data
    return path


def write_feeds(folder: Path, seed: int = 1) -> tuple[Path, Path]:
    """Calibration (24 samples) and evaluation (12 samples) feeds for the model, as .npz."""
    rng = np.random.default_rng(seed)
    calib, evald = folder / "calib.npz", folder / "eval.npz"
    np.savez(calib, x=rng.standard_normal((24, D_IN)).astype(np.float32))
    np.savez(evald, x=rng.standard_normal((12, D_IN)).astype(np.float32))
    return calib, evald
