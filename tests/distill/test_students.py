from __future__ import annotations

import pytest
import torch

from edgecompress.distill.students import derive_student, rebuild_derived
from edgecompress.errors import UnsupportedError
from examples.mnist_models import teacher as mnist_teacher

from .tiny_models import stacked

X = {"x": torch.randn(2, 1, 28, 28)}


def test_width_keeps_teacher_channels_and_residual_groups():
    torch.manual_seed(0)
    t = mnist_teacher().eval()
    s, plan = derive_student(t, "width", 0.35, X)
    mods = plan["modules"]
    # the residual add ties stem, layer1.conv2 (and the next input) to one channel selection
    assert mods["stem.0"]["out"] == mods["layer1.conv2"]["out"] == mods["layer1.conv1"]["in"] == mods["down.0"]["in"]
    assert mods["layer2.conv2"]["out"] == mods["down.0"]["out"] == mods["fc"]["in"]
    assert "out" not in mods["fc"]  # the output stays whole
    keep = mods["stem.0"]["out"]
    assert len(keep) == round(32 * 0.35)
    assert torch.equal(s.stem[0].weight, t.stem[0].weight[keep])
    assert torch.equal(s.stem[1].running_var, t.stem[1].running_var[keep])
    n_s, n_t = sum(p.numel() for p in s.parameters()), sum(p.numel() for p in t.parameters())
    assert n_s <= n_t / 8
    assert s(**X).shape == t(**X).shape
    rebuilt = rebuild_derived(mnist_teacher(), {"kind": "width", "plan": plan})
    rebuilt.load_state_dict(s.state_dict())
    assert torch.allclose(rebuilt.eval()(**X), s.eval()(**X))


def test_width_on_mlp_flatten_linear():
    from .tiny_models import mlp_teacher

    t = mlp_teacher().eval()
    s, plan = derive_student(t, "width", 0.25, X)
    assert s.body[1].out_features == 16 and s.head.in_features == 16
    keep = plan["modules"]["body.1"]["out"]
    assert torch.equal(s.head.weight, t.head.weight[:, keep])


def test_depth_keeps_every_kth_block_with_teacher_weights():
    t = stacked().eval()
    s, plan = derive_student(t, "depth", 2, X)
    assert plan == {"stacks": {"blocks": [0, 2]}}
    assert len(s.blocks) == 2
    assert torch.equal(s.blocks[1].fc.weight, t.blocks[2].fc.weight)
    assert s(**X).shape == (2, 10)


def test_depth_without_stack_is_refused():
    with pytest.raises(UnsupportedError, match="no layer stack"):
        derive_student(mnist_teacher(), "depth", 2, X)
