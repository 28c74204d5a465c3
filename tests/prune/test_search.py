"""The fidelity budget of prune (edgecompress.prune.search): the requested reduction is an upper bound that is
backed off to the largest one inside --max-drop, --max-drop alone searches it, and outside it nothing is written.

The model is a small CNN trained here on the real digits of calibration_data/ (train split); calibration, --eval
and the independent check use the other, disjoint splits."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from prune_helpers import export_model
from torch import nn

from edgecompress.cli import cli
from edgecompress.errors import ConfigError, ValidationError
from edgecompress.fidelity import compare_models
from edgecompress.onnxgraph import census
from edgecompress.prune import PruneConfig, prune

DATA = Path(__file__).resolve().parents[2] / "calibration_data"


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 48, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(48 * 4 * 4, 64), nn.Linear(64, 10)

    def forward(self, x):
        h = torch.max_pool2d(torch.relu(self.c2(torch.relu(self.c1(x)))), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(h, 1))))


@pytest.fixture(scope="module")
def digits(tmp_path_factory, train_on_digits):
    """A DigitsCNN trained on digits_train (about 97 % on digits_val), exported; the data splits."""
    torch.manual_seed(0)
    m = train_on_digits(DigitsCNN(), epochs=15)
    folder = tmp_path_factory.mktemp("digits")
    onnx.save(export_model(m, (1, 1, 8, 8)), str(folder / "cnn.onnx"))
    return {"model": folder / "cnn.onnx", "calib": str(DATA / "digits_calibration.npz"),
            "eval": str(DATA / "digits_eval.npz"), "check": str(DATA / "digits_val.npz")}


def _prune(digits, tmp_path, name="p.onnx", **kw):
    """Judged by the balanced cosine of the class scores (continuous, unlike accuracy on an easy task), without
    least-squares reconstruction (which keeps this small net near lossless down to 5 % of its MACs)."""
    return prune(str(digits["model"]), PruneConfig(metric="cosine", reconstruct=False, **kw), out=tmp_path / name, calibration=digits["calib"],
                 eval_data=digits["eval"])


def test_requested_reduction_outside_the_budget_is_backed_off(digits, tmp_path):
    asked = _prune(digits, tmp_path, "asked.onnx", target_macs=0.15, max_drop=1.0).report
    assert asked.macs_kept <= 0.16 and asked.fidelity.drop > 0.05 and len(asked.curve) == 1
    got = _prune(digits, tmp_path, target_macs=0.15, max_drop=0.02).report
    assert got.fidelity.meets(0.02) and got.macs_kept > asked.macs_kept
    assert census.count_macs(onnx.load(str(tmp_path / "p.onnx"))).total < \
        census.count_macs(onnx.load(str(digits["model"]))).total
    first = min(got.curve, key=lambda p: p.macs_kept)
    assert first.macs_kept == pytest.approx(asked.macs_kept) and not first.within
    assert any("backed off" in n for n in got.notes)
    # judged on --eval; the independent split agrees that the backed-off model is the more faithful one
    assert compare_models(str(digits["model"]), tmp_path / "p.onnx", digits["check"]).drop < \
        compare_models(str(digits["model"]), tmp_path / "asked.onnx", digits["check"]).drop


def test_max_drop_alone_searches_the_largest_reduction_inside(digits, tmp_path):
    r = _prune(digits, tmp_path, max_drop=0.03).report
    assert r.mode == "search" and r.macs_kept < 0.9 and r.fidelity.meets(0.03)
    chosen = [p for p in r.curve if p.chosen]
    assert len(chosen) == 1 and chosen[0].macs_kept == pytest.approx(r.macs_kept, abs=1e-3)
    assert len(r.curve) >= 3
    # bisection: every point tried that keeps fewer MACs than the chosen one is outside the budget
    assert all(not p.within for p in r.curve if p.macs_kept < chosen[0].macs_kept - 1e-9)
    assert [p.macs_kept for p in r.curve] == sorted((p.macs_kept for p in r.curve), reverse=True)
    assert all(p.speedup is not None and p.speedup > 0 for p in r.curve)  # host: measured side by side
    looser = _prune(digits, tmp_path, "loose.onnx", max_drop=0.15).report
    assert looser.macs_kept < r.macs_kept  # a looser budget lets more go


def test_search_needs_data(digits, tmp_path):
    with pytest.raises(ConfigError, match="--calibration or --eval"):
        prune(str(digits["model"]), PruneConfig(), out=tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()


def test_nothing_inside_the_budget_exit_1_with_the_curve(digits, tmp_path):
    out = tmp_path / "p.onnx"
    # fc1 has hidden units that never fire on these digits: removing them is exact (drop 0), so it is skipped
    r = CliRunner().invoke(cli, ["prune", str(digits["model"]), "--out", str(out), "--ratio", "0.5", "--skip",
                                 "/fc1/Gemm", "--max-drop", "0", "--metric", "cosine", "--no-reconstruct",
                                 "--calibration", digits["calib"], "--eval", digits["eval"], "--json"])
    assert r.exit_code == 1, r.output
    d = json.loads(r.stdout)
    assert not d["ok"] and "nothing written" in d["message"] and len(d["report"]["curve"]) >= 2
    assert all(not p["within_budget"] for p in d["report"]["curve"])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_human_output_shows_the_curve(digits, tmp_path):
    r = CliRunner().invoke(cli, ["prune", str(digits["model"]), "--out", str(tmp_path / "p.onnx"),
                                 "--max-drop", "0.05", "--metric", "cosine", "--no-reconstruct", "--calibration", digits["calib"], "--eval", digits["eval"]])
    assert r.exit_code == 0, r.output
    assert "reductions tried" in r.stderr and "chosen" in r.stderr


def test_magnitude_outside_the_budget_is_refused(digits, tmp_path):
    with pytest.raises(ValidationError, match="nothing written"):
        _prune(digits, tmp_path, criterion="magnitude", alpha=0.9, max_drop=0.0)
    assert not (tmp_path / "p.onnx").exists()


def test_refine_combines_the_groups_inside_the_budget():
    """refine() (used when even the global ranking's smallest step is outside): each group probed alone, those
    inside combined greedily, least drop per MAC saved first, only while the combination stays inside. The
    candidates here come from a deterministic additive model of drop and MACs, so the greedy order is checkable."""
    from dataclasses import dataclass

    from edgecompress.prune.search import Candidate, refine

    @dataclass
    class Fid:
        drop: float

        def meets(self, max_drop):
            return self.drop <= max_drop

    cost = {0: 0.004, 1: 0.03, 2: 0.008, 3: 0.009}  # drop when the group loses one unit
    saved = {0: 0.01, 1: 0.05, 2: 0.01, 3: 0.001}  # MACs saved
    full = {g: 16 for g in cost}
    one = {g: 8 for g in cost}
    built = []

    def build(level, counts):
        cut = [g for g in cost if counts[g] < full[g]]
        built.append(tuple(cut))
        return Candidate(level, counts, {}, None, Fid(sum(cost[g] for g in cut)), None, (), (),
                         1 - sum(saved[g] for g in cut), 1.0)

    best, tried = refine(build, full, one, max_drop=0.015)
    assert built[:4] == [(0,), (1,), (2,), (3,)]  # every group probed alone
    assert [g for g in cost if best.counts[g] < 16] == [0, 2]  # 0 then 2 (0.012 inside); adding 3 would exceed
    assert best.macs_kept == pytest.approx(0.98) and len(tried) == len(built)
