"""--exclude keeps the named node in fp32 in every candidate, not only after a fallback (the candidates were once
built with the exclusions in the wrong positional field, so they reached the model only if the budget failed)."""

from __future__ import annotations

import onnx

from edgecompress.quantize import QuantizeConfig, quantize


def _float_weight_consumers(path) -> set[str]:
    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return {n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
            and n.input[1] in inits}


def test_excluded_node_stays_float_with_a_generous_budget(tiny_onnx, mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gemm = next(n.name for n in onnx.load(str(tiny_onnx)).graph.node if n.op_type == "Gemm")
    out = tmp_path / "q.onnx"
    res = quantize(tiny_onnx, QuantizeConfig(exclude=(gemm,), max_drop=0.9, allow_slower=True), out=out,
                   calibration=mnist_small["calib"])
    r = res.report
    assert [e["name"] for e in r.excluded_nodes] == [gemm]
    assert gemm in _float_weight_consumers(out)
    assert _float_weight_consumers(out) == {gemm}  # the two convs are int8
    assert all("(1 fp32)" in c["label"] for c in r.candidates), [c["label"] for c in r.candidates]
    assert not any("+rounding" in c["label"] for c in r.candidates[:1])
