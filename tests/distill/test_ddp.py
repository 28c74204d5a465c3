"""DistributedDataParallel with 2 CPU processes (gloo) matches the single-process run within tolerance."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from edgecompress.distill import DistillConfig, distill

from .conftest import spec


def _cfg() -> DistillConfig:
    return DistillConfig(teacher=spec("mlp_teacher"), student=spec("mlp_student"), epochs=2, batch_size=32,
                         seed=0, device="cpu", optimizer="sgd", lr=0.05)


def _worker(rank: int, world: int, port: int, train: str, val: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        r = distill(_cfg(), data=train, val=val, out=out)
        if rank == 0:
            Path(out + ".json").write_text(json.dumps(r.report.to_dict()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_ddp_two_processes_match_single(mnist_small, tmp_path):
    train, val = mnist_small
    single = distill(_cfg(), data=train, val=val, out=tmp_path / "single.pt").report
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), str(train), str(val), out), nprocs=2, join=True)
    ddp = json.loads(Path(out + ".json").read_text())
    assert ddp["world_size"] == 2 and single.world_size == 1
    for a, b in zip(single.history, ddp["history"], strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-4 * max(1.0, abs(a["train_loss"])), (a, b)
    assert abs(single.val_metric - ddp["val_metric"]) <= 0.01
    s = torch.load(tmp_path / "single.pt", weights_only=True)["state_dict"]
    d = torch.load(out, weights_only=True)["state_dict"]
    for k in s:
        assert torch.allclose(s[k], d[k], atol=1e-4), k
