"""`prune --recover` (edgecompress.distill.recover): label-free distillation of a pruned ONNX model from the
original wins fidelity back on data it never saw, resumes exactly, and is refused where it has nothing to do.

The model is a small CNN trained here on the real digits of calibration_data/ (train split); the recovery uses
the calibration split without its labels, the stage judges on the eval split, the test on the val split."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgecompress.cli import cli
from edgecompress.data import load_data
from edgecompress.distill import recover as rec
from edgecompress.fidelity import CompareConfig, compare_models
from edgecompress.prune import PruneConfig, prune

DATA = Path(__file__).resolve().parents[2] / "calibration_data"


@pytest.fixture(scope="module")
def digits(tmp_path_factory, train_on_digits):
    torch.manual_seed(0)
    m = train_on_digits(nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(),
                                      nn.Linear(64, 10)))
    folder = tmp_path_factory.mktemp("digits")
    f = io.BytesIO()
    torch.onnx.export(m.eval(), (torch.zeros(1, 1, 8, 8),), f, dynamo=False, input_names=["input"],
                      output_names=["out"])
    (folder / "cnn.onnx").write_bytes(f.getvalue())
    unlabeled = folder / "unlabeled.npz"
    np.savez(unlabeled, input=np.load(DATA / "digits_calibration.npz")["input"])
    return {"model": folder / "cnn.onnx", "unlabeled": str(unlabeled), "eval": str(DATA / "digits_eval.npz"),
            "check": str(DATA / "digits_val.npz")}


# heavy pruning without least squares or compensation: a model that has lost a lot, for recovery to win back
BROKEN = dict(target_macs=0.15, reconstruct=False, compensate=False, metric="cosine", max_drop=1.0)


def test_recover_wins_fidelity_back_on_unseen_data(digits, tmp_path):
    plain = prune(str(digits["model"]), PruneConfig(**BROKEN), out=tmp_path / "p.onnx",
                  calibration=digits["unlabeled"], eval_data=digits["eval"]).report
    res = prune(str(digits["model"]), PruneConfig(**BROKEN, recover=True, recover_steps=150, device="cpu"),
                out=tmp_path / "r.onnx", calibration=digits["unlabeled"], eval_data=digits["eval"],
                recover_data=digits["unlabeled"]).report
    assert res.recovery["kept"] and res.recovery["device"] == "cpu" and res.recovery["steps"] == 150
    assert res.recovery["fidelity_before"]["drop"] == pytest.approx(plain.fidelity.drop)
    assert res.fidelity.drop < 0.5 * plain.fidelity.drop, (plain.fidelity.drop, res.fidelity.drop)
    assert res.macs_kept == pytest.approx(plain.macs_kept)  # the same graph, other weights
    cos = CompareConfig(metric="cosine")
    before = compare_models(str(digits["model"]), tmp_path / "p.onnx", digits["check"], cos).drop
    after = compare_models(str(digits["model"]), tmp_path / "r.onnx", digits["check"], cos).drop
    assert after < 0.5 * before, (before, after)  # on data neither the recovery nor the stage saw
    assert not (tmp_path / "r.onnx.recover-state").exists()
    p, r = onnx.load(str(tmp_path / "p.onnx")), onnx.load(str(tmp_path / "r.onnx"))
    assert [n.op_type for n in p.graph.node] == [n.op_type for n in r.graph.node]


def test_killed_recovery_resumes_to_the_same_weights(digits, tmp_path, monkeypatch):
    teacher = onnx.load(str(digits["model"]))
    prune(str(digits["model"]), PruneConfig(**BROKEN), out=tmp_path / "p.onnx", calibration=digits["unlabeled"],
          eval_data=digits["eval"])
    student = onnx.load(str(tmp_path / "p.onnx"))
    data = load_data(digits["unlabeled"])
    settings = rec.RecoverSettings(steps=70, batch_size=16, lr=1e-3, device="cpu")
    state = tmp_path / "s.state"
    whole, _ = rec.recover(teacher, student, data, settings, state_path=state, progress=False)

    real_update = rec._Bar.update

    def killed(self, text, log=False):
        if "step 61/" in text:
            raise KeyboardInterrupt
        real_update(self, text, log)

    monkeypatch.setattr(rec._Bar, "update", killed)
    with pytest.raises(KeyboardInterrupt):
        rec.recover(teacher, student, data, settings, state_path=state, progress=False)
    assert state.is_file()  # saved at step 50
    monkeypatch.setattr(rec._Bar, "update", real_update)
    resumed, report = rec.recover(teacher, student, data, rec.RecoverSettings(**{**settings.__dict__, "resume": True}),
                                  state_path=state, progress=False)
    assert report.resumed_from == 50 and not state.exists()
    for a, b in zip(whole.graph.initializer, resumed.graph.initializer, strict=True):
        np.testing.assert_allclose(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b), rtol=1e-5,
                                   atol=1e-6)


def test_resume_with_other_options_is_refused(digits, tmp_path):
    teacher = onnx.load(str(digits["model"]))
    data = load_data(digits["unlabeled"])
    state = tmp_path / "s.state"
    settings = rec.RecoverSettings(steps=60, batch_size=16, lr=1e-3, device="cpu")
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], 0.1)
    rec._save(state, "another-fingerprint", 50, rec.OnnxModule(teacher), opt,
              torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), [])
    from edgecompress.errors import ConfigError

    with pytest.raises(ConfigError, match="other options"):
        rec.recover(teacher, teacher, data, rec.RecoverSettings(**{**settings.__dict__, "resume": True}),
                    state_path=state, progress=False)


def test_recover_needs_a_reduction_exit_2(digits, tmp_path):
    r = CliRunner().invoke(cli, ["prune", str(digits["model"]), "--out", str(tmp_path / "p.onnx"), "--recover",
                                 digits["unlabeled"], "--calibration", digits["unlabeled"]])
    assert r.exit_code == 2 and "ratio or target_macs" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_procedural_images_take_the_data_scale():
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(64, 3, 32, 32) * 2 + 5]
    stats = rec._image_stats([x])
    a = rec._views(x, torch.Generator().manual_seed(3), stats, synthetic=0.5)[0]
    b = rec._views(x, torch.Generator().manual_seed(3), stats, synthetic=0.5)[0]
    assert torch.equal(a, b)  # the draws come from the generator alone
    leaves = rec.dead_leaves(8, 3, 32, 32, g)
    assert leaves.shape == (8, 3, 32, 32) and 0 <= float(leaves.min()) and float(leaves.max()) <= 1
    assert len(torch.unique(leaves[0, 0])) > 3  # discs of several colours
    assert abs(float(a.mean()) - 5) < 1.0  # mixed with the real samples at their scale
