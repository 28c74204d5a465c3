"""Train examples/mnist_models.py:teacher on the shipped MNIST split on a GPU; save its state_dict (argv[1]).

Used by scripts/ddp_gpu/run.sh (the 1-process vs torchrun comparison on a lent GPU machine)."""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, ".")
from examples.mnist_models import teacher  # noqa: E402


def main(out: str) -> None:
    torch.manual_seed(0)
    z = np.load("calibration_data/mnist_train.npz")
    x, y = torch.tensor(z["input"]).cuda(), torch.tensor(z["labels"]).long().cuda()
    m = teacher().cuda()
    opt = torch.optim.Adam(m.parameters(), 2e-3)
    for _ in range(15):
        m.train()
        perm = torch.randperm(len(x), device="cuda")
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    v = np.load("calibration_data/mnist_val.npz")
    m.eval()
    with torch.no_grad():
        acc = (m(torch.tensor(v["input"]).cuda()).argmax(1).cpu().numpy() == v["labels"]).mean()
    print("teacher val acc", acc)
    torch.save({k: t.cpu() for k, t in m.state_dict().items()}, out)


if __name__ == "__main__":
    main(sys.argv[1])
