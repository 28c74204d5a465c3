"""census / inspect of weight-only low-bit (ORT MatMulNBits, GatherBlockQuantized) and fp16 models made by ONNX
Runtime's own quantizer and fp16 converter: MACs and parameter counts equal the fp32 original's, the weight census
names the storage format (4-bit block 32, 8-bit, fp16) with bytes and bits per weight, the models really run."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from lowbit_helpers import EMBED_MACS, HIDDEN, MLP_MACS, OUT, SEQ, VOCAB, cosine, embed_feeds, mlp_feeds, run

from edgecompress.cli import cli
from edgecompress.onnxgraph.census import (
    count_macs,
    count_params,
    int8_census,
    op_histogram,
    quant_state,
    weight_census,
    weight_format_label,
)
from edgecompress.onnxgraph.inspect import inspect


def _load(models, key) -> onnx.ModelProto:
    return onnx.load(str(models[key]))


def _row(rows, fmt):
    return next(r for r in rows if r["format"] == fmt)


@pytest.mark.parametrize("src, q", [("mlp_fp32", "mlp_int4"), ("mlp_fp32", "mlp_int8"), ("mlp_fp32", "mlp_fp16"),
                                    ("embed_fp32", "embed_int4"), ("embed_fp32", "embed_uint4")])
def test_macs_and_params_equal_the_fp32_model(lowbit_models, src, q):
    fp32, low = _load(lowbit_models, src), _load(lowbit_models, q)
    want = MLP_MACS if src == "mlp_fp32" else EMBED_MACS
    assert count_macs(fp32).total == want
    rep = count_macs(low)
    assert rep.total == want and not rep.uncounted, rep  # was 0 for MatMulNBits (its packed B is not [K, N])
    if "fp16" not in q:
        assert rep.by_op_type == {"com.microsoft.MatMulNBits": want}
    # packed 4-bit bytes hold two weights: the logical count is the fp32 model's
    assert count_params(low, exclude_quant_params=True) == count_params(fp32)


def test_matmulnbits_macs_follow_symbolic_dims(lowbit_models):
    m = _load(lowbit_models, "mlp_int4")
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "seq"
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "seq"
    assert count_macs(m).total == MLP_MACS // SEQ  # seq counted as 1, and said so
    assert any("'seq'" in s for s in count_macs(m).symbolic)
    assert count_macs(m, {"seq": 128}).total == 128 * (HIDDEN * HIDDEN + HIDDEN * OUT)


def test_weight_census_int4_int8_fp16(lowbit_models):
    w4 = weight_census(_load(lowbit_models, "mlp_int4"))
    r4 = _row(w4, "4-bit block 32")
    assert r4["kind"] == "block" and r4["tensors"] == 2 and r4["weights"] == HIDDEN * HIDDEN + HIDDEN * OUT
    assert r4["bytes"] == r4["weights"] // 2  # two weights per byte
    assert r4["overhead_bytes"] == (HIDDEN + OUT) * (HIDDEN // 32) * 4  # one fp32 scale per block of 32
    assert r4["bits_per_weight"] == pytest.approx(5.0)  # 4 bits + a 32-bit scale per 32 weights
    assert r4["ops"] == ["com.microsoft.MatMulNBits"] and sorted(r4["names"]) == ["w1_Q4", "w2_Q4"]
    assert _row(w4, "fp32")["weights"] == 3 * HIDDEN  # bias and LayerNorm stay fp32
    assert weight_format_label(w4) == "int4 weight-only, block 32"

    w8 = weight_census(_load(lowbit_models, "mlp_int8"))
    assert _row(w8, "8-bit block 32")["bits_per_weight"] == pytest.approx(9.0)
    assert weight_format_label(w8) == "int8 weight-only, block 32"

    w16 = weight_census(_load(lowbit_models, "mlp_fp16"))
    assert [r["format"] for r in w16] == ["fp16"] and w16[0]["bits_per_weight"] == 16
    assert weight_format_label(w16) == "fp16"
    assert weight_format_label(weight_census(_load(lowbit_models, "mlp_fp32"))) == "fp32"


def test_weight_census_gather_block_quantized(lowbit_models):
    for key in ("embed_int4", "embed_uint4"):
        rows = weight_census(_load(lowbit_models, key))
        r = _row(rows, "4-bit block 32")  # the int4/uint4 table and the MatMulNBits weight
        assert r["weights"] == VOCAB * HIDDEN + HIDDEN * OUT and r["bytes"] == r["weights"] // 2
        assert r["ops"] == ["com.microsoft.GatherBlockQuantized", "com.microsoft.MatMulNBits"]
        assert weight_format_label(rows) == "int4 weight-only, block 32"
    asym = _row(weight_census(_load(lowbit_models, "embed_uint4")), "4-bit block 32")
    assert asym["bits_per_weight"] > 5.0  # zero points add to the scales


def test_quant_state_and_int8_census(lowbit_models):
    for key in ("mlp_int4", "mlp_int8", "embed_int4"):
        assert quant_state(_load(lowbit_models, key)) == "weight-only"
    assert quant_state(_load(lowbit_models, "mlp_fp16")) == "none"
    c = int8_census(_load(lowbit_models, "mlp_int4"))
    assert c["int8"] == 0 and c["float"] == 0 and c["other"] == 2
    assert set(c["other_nodes"].values()) == {"int4 weight-only"}
    assert c["by_op_type"]["MatMul"]["int4 weight-only"] == 2
    assert set(int8_census(_load(lowbit_models, "mlp_int8"))["other_nodes"].values()) == {"int8 weight-only"}
    hist = op_histogram(_load(lowbit_models, "embed_int4"))
    assert hist == {"com.microsoft.GatherBlockQuantized": 1, "com.microsoft.MatMulNBits": 1}


def test_the_models_are_real(lowbit_models):
    """ORT runs them and they stay close to fp32 (so the census describes working models)."""
    x, ids = mlp_feeds(4), embed_feeds(4)
    ref = run(lowbit_models["mlp_fp32"], x)
    assert ref.shape == (4, SEQ, OUT)
    assert cosine(ref, run(lowbit_models["mlp_int4"], x)) > 0.98
    assert cosine(ref, run(lowbit_models["mlp_int8"], x)) > 0.999
    assert cosine(ref, run(lowbit_models["mlp_fp16"], x)) > 0.9999
    eref = run(lowbit_models["embed_fp32"], ids)
    for key in ("embed_int4", "embed_uint4"):
        assert cosine(eref, run(lowbit_models[key], ids)) > 0.98


def test_inspect_report_and_cli(lowbit_models):
    rep = inspect(lowbit_models["mlp_int4"])
    assert rep.checker == "ok" and rep.quantization == "weight-only"
    assert rep.macs.total == MLP_MACS and rep.weight_format == "int4 weight-only, block 32"
    assert rep.params_bytes == sum(r["bytes"] + r["overhead_bytes"] for r in rep.weights)
    assert rep.int8["other_nodes"] and rep.int8["int8"] == 0
    r = CliRunner().invoke(cli, ["inspect", str(lowbit_models["embed_int4"]), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["macs"]["total"] == EMBED_MACS and d["weight_format"] == "int4 weight-only, block 32"
    assert _row(d["weights"], "4-bit block 32")["weights"] == VOCAB * HIDDEN + HIDDEN * OUT
    r = CliRunner().invoke(cli, ["inspect", str(lowbit_models["mlp_fp16"])])
    assert r.exit_code == 0, r.output
    assert "weights: fp16" in r.output and "MACs 49.2k" in r.output
    r = CliRunner().invoke(cli, ["inspect", str(lowbit_models["mlp_int4"])])
    assert "4-bit block 32" in r.output and "int4 weight-only: 2/2" in r.output


def test_packed_uint8_gather_table_counts_two_weights_per_byte():
    """A packed uint8 GatherBlockQuantized table counts two weights per byte."""
    from onnx import TensorProto, helper, numpy_helper

    data = numpy_helper.from_array(np.zeros((16, 16), np.uint8), "t")  # 16 x 32 4-bit values
    scales = numpy_helper.from_array(np.ones((16, 1), np.float32), "s")
    node = helper.make_node("GatherBlockQuantized", ["t", "i", "s"], ["y"], domain="com.microsoft", bits=4,
                            block_size=32, gather_axis=0, quantize_axis=1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("i", TensorProto.INT64, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 32])], [data, scales])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    import onnxruntime as ort

    out = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"i": np.array([0, 5, 15], np.int64)})[0]
    assert out.shape == (3, 32)  # ORT agrees: 16 bytes per row are 32 weights
    assert count_params(m, exclude_quant_params=True) == 16 * 32
    assert _row(weight_census(m), "4-bit block 32")["weights"] == 16 * 32
