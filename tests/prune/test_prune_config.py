import pytest

from edgecompress.errors import ConfigError
from edgecompress.prune import PruneConfig


@pytest.mark.parametrize("kw, match", [
    ({"ratio": 1.0}, "ratio"),
    ({"ratio": -0.1}, "ratio"),
    ({"ratio": "0.5"}, "ratio"),
    ({"target_macs": 0.0}, "target_macs"),
    ({"target_macs": 1.0}, "target_macs"),
    ({"target_macs": 1.5}, "target_macs"),
    ({"ratio": 0.3, "target_macs": 0.5}, "exclusive"),
    ({"ratio": 0.3, "max_drop": 1.5}, "max_drop"),
    ({"ratio": 0.3, "max_drop": -0.1}, "max_drop"),
    ({"ratio": 0.3, "criterion": "entropy"}, "criterion"),
    ({"ratio": 0.3, "alpha": 0.0}, "alpha"),
    ({"ratio": 0.3, "alpha": 1.0}, "alpha"),
    ({"ratio": 0.3, "round_to": 0}, "round_to"),
    ({"ratio": 0.3, "round_to": 3.5}, "round_to"),
    ({"ratio": 0.3, "round_to": True}, "round_to"),
    ({"ratio": 0.3, "skip": ("",)}, "skip"),
    ({"ratio": 0.3, "min_keep": 0}, "min_keep"),
    ({"ratio": 0.3, "samples": 0}, "samples"),
    ({"ratio": 0.3, "reconstruct": "yes"}, "reconstruct"),
])
def test_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        PruneConfig(**kw)


def test_good_values():
    assert PruneConfig(ratio=0.0).ratio == 0.0
    assert PruneConfig(target_macs=0.5, criterion="bn", round_to=16).round_to == 16
    assert PruneConfig(criterion="magnitude").ratio is None
    assert PruneConfig(ratio=0.2, skip=["a"]).skip == ("a",)
    assert PruneConfig().searches and not PruneConfig(ratio=0.1).searches  # neither bound: the budget search
    assert PruneConfig().max_drop == 0.02 and PruneConfig(max_drop=1).max_drop == 1
