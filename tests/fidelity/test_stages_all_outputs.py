"""Every stage's fidelity check covers every output: the TwoHead model's second output is what int8 / pruning
break, the first stays intact."""

from __future__ import annotations

import os

import pytest

from edgecompress.errors import ValidationError
from edgecompress.fidelity import compare_models
from edgecompress.prune import PruneConfig, prune
from edgecompress.quantize import QuantizeConfig, quantize


def test_quantize_check_fails_on_the_second_output(two_head, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "q.onnx"
    cfg = QuantizeConfig(mode="static", per_channel=True, allow_slower=True)
    try:
        res = quantize(str(two_head["model"]), cfg, out=out, calibration=two_head["calib"],
                       eval_data=two_head["eval"])
    except ValidationError as exc:  # no fallback could repair it: refused, naming the output
        assert "mixed" in exc.message and not out.exists()
        return
    r = res.report.to_dict()
    first = r["candidates"][0]
    # every plain int8 candidate failed the check on `mixed` while `logits` kept its accuracy
    assert first["worst_output"] == "mixed" and first["drop"] > cfg.max_drop
    assert first["headline"]["cosine"] > 0.999 and first["headline"]["top1_agreement"] > 0.97
    # what was written passes on both outputs, on the stage's own data and checked again here
    assert r["excluded_nodes"] and r["fidelity"]["drop"] <= cfg.max_drop
    assert [o["name"] for o in r["fidelity"]["comparison"]["outputs"]] == ["logits", "mixed"]
    from edgecompress.data import load_data

    again = compare_models(two_head["model"], out, load_data(two_head["eval"]))
    assert again.output("mixed").metrics["balanced_cosine"] > 0.98
    assert sorted(os.listdir(tmp_path)) == ["q.onnx"]


def test_prune_max_drop_is_checked_on_every_output(two_head, tmp_path):
    """Pruning hurts the class logits more than the (linear, easily reconstructed) map: with the logits as the
    *second* output, a budget the first output meets still fails on the second, so the stage backs off to a
    smaller reduction inside the budget on both; with no reduction inside, nothing is written."""
    import onnx

    proto = onnx.load(str(two_head["model"]))
    outs = list(proto.graph.output)
    del proto.graph.output[:]
    proto.graph.output.extend(outs[::-1])  # outputs: mixed, logits
    src = tmp_path / "swapped.onnx"
    onnx.save(proto, str(src))
    base = dict(target_macs=0.4)
    res = prune(str(src), PruneConfig(**base, max_drop=1.0), out=tmp_path / "p.onnx", calibration=str(two_head["calib"]),
                eval_data=str(two_head["eval"]))
    drops = {o.name: o.drop for o in res.report.fidelity.outputs}
    assert list(drops) == ["mixed", "logits"]
    assert drops["logits"] > drops["mixed"] + 0.005, drops
    budget = (drops["logits"] + drops["mixed"]) / 2  # enough for the first output, not for the second
    dest = tmp_path / "p2.onnx"
    backed = prune(str(src), PruneConfig(**base, max_drop=budget), out=dest, calibration=str(two_head["calib"]),
                   eval_data=str(two_head["eval"])).report
    asked = min(backed.curve, key=lambda p: p.macs_kept)  # the requested reduction, tried first
    assert asked.output == "logits" and not asked.within and asked.macs_kept == pytest.approx(res.report.macs_kept)
    assert backed.macs_kept > res.report.macs_kept and backed.fidelity.meets(budget)
    assert sum(p.chosen for p in backed.curve) == 1 and [p for p in backed.curve if p.chosen][0].within
    dest.unlink()
    with pytest.raises(ValidationError, match="nothing written"):
        prune(str(src), PruneConfig(**base, max_drop=0.0), out=dest, calibration=str(two_head["calib"]),
              eval_data=str(two_head["eval"]))
    assert not dest.exists()
    ok = prune(str(src), PruneConfig(**base, max_drop=drops["logits"] + 0.01), out=dest,
               calibration=str(two_head["calib"]), eval_data=str(two_head["eval"]))
    assert dest.exists() and ok.report.fidelity.meets(drops["logits"] + 0.01)


def test_bench_fails_a_model_outside_the_budget(two_head, tmp_path):
    from onnxruntime.quantization import quantize_static

    from edgecompress.bench import BenchConfig, bench
    from edgecompress.data import load_data
    from edgecompress.quantize.calibration import FeedReader

    q = tmp_path / "ort.onnx"
    quantize_static(str(two_head["model"]), str(q), FeedReader(load_data(two_head["calib"])))
    cfg = BenchConfig(runs=3, warmup=1, max_drop=0.01)
    with pytest.raises(ValidationError, match="mixed"):
        bench([str(two_head["model"]), str(q)], cfg, data=str(two_head["eval"]))
