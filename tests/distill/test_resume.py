"""SIGKILL during training, then --resume: the same final weights as an uninterrupted run (CPU, seeded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from edgecompress.distill import DistillConfig, distill

from .conftest import ROOT, spec


def _cmd(train, val, out, *extra):
    return [sys.executable, "-m", "edgecompress", "distill", "--teacher", spec("mlp_teacher"),
            "--student", spec("mlp_student"), "--data", str(train), "--val", str(val), "--out", str(out),
            "--epochs", "6", "--batch-size", "8", "--max-samples", "160", "--seed", "3", "--augment-shift", "1",
            "--augment-rotate", "8", "--optimizer", "sgd", "--lr", "0.05", "--json", *extra]


def test_sigkill_then_resume_matches_uninterrupted(mnist_small, tmp_path):
    train, val = mnist_small
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    ref = tmp_path / "ref.pt"  # the uninterrupted run, in this process (1 thread, like the subprocesses)
    cfg = DistillConfig(teacher=spec("mlp_teacher"), student=spec("mlp_student"), epochs=6, batch_size=8, seed=3,
                        augment_shift=1, augment_rotate=8, optimizer="sgd", lr=0.05, max_samples=160)
    distill(cfg, data=train, val=val, out=ref)

    out = tmp_path / "killed.pt"
    state = tmp_path / "killed.pt.state"
    proc = subprocess.Popen(_cmd(train, val, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = torch.load(state, weights_only=True)["epoch"]
    assert killed_at < 5

    p = subprocess.run(_cmd(train, val, out, "--resume"), check=True, capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    rep = json.loads(p.stdout)["report"]
    assert rep["resumed_from_epoch"] == killed_at + 1

    a = torch.load(tmp_path / "ref.pt.state", weights_only=True)
    b = torch.load(state, weights_only=True)
    assert a["epoch"] == b["epoch"] == 5
    for k in a["student"]:
        assert torch.equal(a["student"][k], b["student"][k]), k  # final weights, bit for bit
    ca, cb = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    for k in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][k], cb["state_dict"][k]), k  # best checkpoint too
    assert a["history"] == b["history"]
