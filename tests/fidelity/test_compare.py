"""compare_models / run_outputs / judge on real ONNX Runtime sessions: every output, closed-loop state."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecompress.errors import ConfigError, DataError
from edgecompress.fidelity import CompareConfig, better, compare_models, detect_state, judge, run_outputs


def _stateful(path, decay: float) -> str:
    """y = x + s; s_next = decay * s + x (a leaky accumulator with state input 'state', output 'stateN')."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    s = helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    sn = helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [1, 4])
    d = helper.make_tensor("d", TensorProto.FLOAT, [1], [decay])
    g = helper.make_graph([helper.make_node("Add", ["x", "state"], ["y"]),
                           helper.make_node("Mul", ["state", "d"], ["ds"]),
                           helper.make_node("Add", ["ds", "x"], ["stateN"])], "acc", [x, s], [y, sn], [d])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


def _feeds(n: int = 20):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(1, 4)).astype(np.float32), "state": np.zeros((1, 4), np.float32)}
            for _ in range(n)]


def test_closed_loop_feeds_each_model_its_own_state(tmp_path):
    m = _stateful(tmp_path / "a.onnx", 0.9)
    feeds = _feeds(5)
    outs = run_outputs(m, feeds, state=(("state", "stateN"),))
    s = np.zeros((1, 4))
    for k, f in enumerate(feeds):
        np.testing.assert_allclose(outs["y"][k], f["x"] + s, rtol=1e-6)
        s = 0.9 * s + f["x"]
    open_loop = run_outputs(m, feeds)  # every feed from the stored zero state
    np.testing.assert_allclose(open_loop["y"][3], feeds[3]["x"])


def test_state_damage_only_shows_in_closed_loop(tmp_path):
    """Two models that agree on one step from zero state and drift apart through their state."""
    ref, cand = _stateful(tmp_path / "a.onnx", 0.9), _stateful(tmp_path / "b.onnx", 0.2)
    auto = compare_models(ref, cand, _feeds(), CompareConfig())  # state detected from names/shapes
    assert auto.state == (("state", "stateN"),) and [o.name for o in auto.outputs] == ["y"]
    assert auto.drop > 0.05
    off = compare_models(ref, cand, _feeds(), CompareConfig(state=("none",)))
    assert off.drop < 1e-6  # open loop: the same function of x, so it cannot see the difference
    with pytest.raises(ConfigError, match="state"):
        compare_models(ref, cand, _feeds(), CompareConfig(state=("h=hn",)))


def test_detect_state_by_name_and_shape():
    from dataclasses import dataclass

    @dataclass
    class T:
        name: str
        shape: tuple
        dtype: str = "tensor(float)"

    ins = [T("input", (1, 576)), T("h_in", (2, 1, 64)), T("sr", ())]
    outs = [T("output", (1, 1)), T("h_out", (2, 1, 64))]
    assert detect_state(ins, outs) == (("h_in", "h_out"),)
    assert detect_state([T("state", (2, 1, 128))], [T("stateN", (2, 1, 64))]) == ()  # other shape


def test_every_output_judged_and_missing_is_broken():
    rng = np.random.default_rng(0)
    ref = {"a": [rng.normal(size=(1, 8)) for _ in range(10)], "b": [rng.normal(size=(1, 3, 5)) for _ in range(10)]}
    got = {"a": [x.copy() for x in ref["a"]]}
    rep = judge(ref, got)
    assert [o.name for o in rep.outputs] == ["a", "b"] and rep.worst.name == "b" and rep.broken
    assert rep.drop == 1.0 and not rep.meets(0.5)
    with pytest.raises(DataError, match="labels"):
        judge(ref, got, CompareConfig(metric="accuracy"))


def test_better_treats_noise_as_a_tie():
    rng = np.random.default_rng(0)
    ref = {"a": [rng.normal(size=(1, 16)) for _ in range(40)]}
    small = judge(ref, {"a": [x + rng.normal(0, 0.01, x.shape) for x in ref["a"]]})
    large = judge(ref, {"a": [x + rng.normal(0, 0.3, x.shape) for x in ref["a"]]})
    assert better(small, large) and not better(large, small)


def test_two_output_model_second_output_judged(two_head):
    """The int8 damage sits on the second output only: a first-output check passes, ours does not."""
    from onnxruntime.quantization import QuantType, quantize_static

    from edgecompress.data import load_data
    from edgecompress.quantize.calibration import FeedReader

    q = two_head["model"].with_name("ort_q.onnx")
    quantize_static(str(two_head["model"]), str(q), FeedReader(load_data(two_head["calib"])),
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    rep = compare_models(two_head["model"], q, load_data(two_head["eval"]))
    logits, mixed = rep.output("logits"), rep.output("mixed")
    assert logits.drop < 0.02 and logits.metrics["top1_agreement"] > 0.97
    assert mixed.metrics["cosine"] > 0.999  # one cosine over the tensor sees nothing
    assert mixed.metrics["balanced_cosine"] < 0.9 and mixed.metrics["slice_cosine_min"] < 0.5
    assert rep.worst.name == "mixed" and not rep.meets(0.01)
