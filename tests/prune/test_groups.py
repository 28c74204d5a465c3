"""Dependency analysis: every group kind on models built in code."""

from __future__ import annotations

import pytest
import torch
from prune_helpers import export_model

from edgecompress.prune.graphutil import prepare
from edgecompress.prune.groups import analyze
from examples import mnist_models, zoo


def groups_of(model, shape, **kw):
    torch.manual_seed(0)
    m = prepare(export_model(model, shape, **kw))
    return analyze(m)


def by_origin(analysis, fragment):
    return [g for g in analysis.groups if any(fragment in o for o in g.origins)]


@pytest.mark.parametrize("keep_bn", [False, True])
def test_residual_adds_couple_convs(keep_bn):
    a = groups_of(zoo.ResNet18Like(10, width=8), (1, 3, 32, 32), keep_bn=keep_bn)
    stem = by_origin(a, "stem")[0]
    # stem conv + the two conv2 of stage 1 feed the same residual adds
    assert len(stem.origins) == 3 and stem.prunable
    kinds = {sl.kind for sl in stem.slices}
    assert "weight_out" in kinds and "weight_in" in kinds
    if keep_bn:
        assert {"bn_scale", "bn_var"} <= kinds and stem.bn_nodes
    inner = [g for g in a.groups if len(g.origins) == 1 and "conv1" in g.origins[0]]
    assert len(inner) == 8 and all(g.prunable for g in inner)
    fc = by_origin(a, "fc")[0]
    assert not fc.prunable and "model output" in fc.reasons[0]


def test_depthwise_and_inverted_residuals():
    a = groups_of(zoo.mnist_depthwise(), (1, 1, 28, 28), keep_bn=True)
    dw = [g for g in a.groups if any(sl.kind == "dw_weight" for sl in g.slices)]
    assert dw and all(g.prunable for g in dw)
    assert any(f.kind == "dw_group" for f in a.fixes)
    # the inverted residual couples the block outputs (projection convs) of a stage
    assert any(len(g.origins) == 2 and g.prunable for g in a.groups)


def test_concat_offsets_and_flatten_gemm():
    a = groups_of(zoo.concat_net(), (1, 1, 28, 28))
    ga, gb = by_origin(a, "/a/")[0], by_origin(a, "/b/")[0]
    ins_a = [sl for sl in ga.slices if sl.kind == "weight_in"]
    ins_b = [sl for sl in gb.slices if sl.kind == "weight_in"]
    assert [sl.offset for sl in ins_a] == [0] and [sl.offset for sl in ins_b] == [8]
    gc = by_origin(a, "/c/")[0]
    gemm_in = [sl for sl in gc.slices if sl.kind == "weight_in"][0]
    assert gemm_in.expand == 7 * 7  # one channel = its 7x7 columns of the Gemm


def test_mlp_hidden_units():
    a = groups_of(zoo.mlp(), (1, 1, 28, 28))
    hidden = [g for g in a.groups if g.prunable]
    assert [g.size for g in hidden] == [256, 256]
    assert all(g.kind == "units" for g in hidden)


@pytest.mark.parametrize("factory, shape", [(zoo.tiny_transformer, (1, 1, 28, 28)), (zoo.seq_encoder, (1, 10, 16))])
def test_attention_heads_are_whole_heads(factory, shape):
    a = groups_of(factory(), shape)
    heads = [g for g in a.groups if g.kind == "heads"]
    assert len(heads) == 2 and all(g.prunable and g.size == 4 for g in heads)
    outs = [sl for sl in heads[0].slices if sl.kind == "weight_out"]
    assert len(outs) == 3 and all(sl.expand == heads[0].unit for sl in outs)
    ffn = [g for g in a.groups if g.kind == "units" and g.prunable]
    assert len(ffn) == 2  # the FFN hidden units; the residual stream is unprunable (LayerNorm)
    assert any("LayerNormalization" in r for g in a.groups for r in g.reasons)


def test_unfolded_torchscript_transformer(tmp_path):
    """do_constant_folding=False leaves weights behind Transpose and shape arithmetic: folded before analysis."""
    a = groups_of(zoo.tiny_transformer(), (1, 1, 28, 28), keep_bn=True)
    assert sum(g.kind == "heads" and g.prunable for g in a.groups) == 2


def test_dynamo_graph_folded_bn(tmp_path):
    a = groups_of(mnist_models.MnistResNet(width=8), (1, 1, 28, 28), dynamo=True, path=tmp_path / "d.onnx")
    assert sum(g.prunable for g in a.groups) == 4


class Odd(torch.nn.Module):
    """One branch goes through LRN (normalizes across channels: not prunable); the other is plain."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.lrn = torch.nn.LocalResponseNorm(3)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.c = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.c(torch.relu(self.b(self.lrn(self.a(x)))))


def test_unknown_use_blocks_with_reason():
    a = groups_of(Odd(), (1, 1, 8, 8))
    ga, gb = by_origin(a, "/a/")[0], by_origin(a, "/b/")[0]
    assert gb.prunable
    assert not ga.prunable and ga.reasons


def test_model_input_channels_never_pruned():
    a = groups_of(zoo.mlp(), (1, 1, 28, 28))
    # fc1 reads the model input: it is a consumer only, never a producer of a prunable space of the input
    assert not any("input" in o for g in a.groups for o in g.origins)
    first = by_origin(a, "fc1")[0]
    assert all(sl.kind != "weight_in" or sl.node != "/fc1/Gemm" for sl in first.slices)


def test_pad_with_non_constant_axes_blocks_with_reason():
    """Pad (opset 18) whose axes come from a graph input: the channels it touches stay whole, with a reason."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((2, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a"),
             helper.make_node("Pad", ["a", "pads", "", "axes"], ["p"], name="pad"),
             helper.make_node("Conv", ["p", "w2"], ["y"], name="conv_b")]
    graph = helper.make_graph(nodes, "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8]),
                                             helper.make_tensor_value_info("axes", TensorProto.INT64, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    a = analyze(prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])))
    g = by_origin(a, "conv_a")[0]
    assert not g.prunable and any("non-constant axes" in r for r in g.reasons), g.reasons
