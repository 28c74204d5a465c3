"""QuantizeConfig validation: every bad value names its field."""

from __future__ import annotations

import pytest

from edgecompress.errors import ConfigError
from edgecompress.quantize import QuantizeConfig


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "fast"}, "mode"),
    ({"method": "kl"}, "method"),
    ({"format": "qlinear"}, "format"),
    ({"activation_type": "int4"}, "activation_type"),
    ({"metric": "f1"}, "metric"),
    ({"per_channel": "yes"}, "per_channel"),
    ({"max_drop": -0.1}, "max_drop"),
    ({"max_drop": 1.5}, "max_drop"),
    ({"max_drop": True}, "max_drop"),
    ({"max_drop": "1%"}, "max_drop"),
    ({"exclude": "conv1"}, "exclude"),
    ({"exclude": ("",)}, "exclude"),
    ({"allow_slower": 1}, "allow_slower"),
    ({"mode": "dynamic", "method": "entropy"}, "method"),
    ({"mode": "dynamic", "activation_type": "int8"}, "activation_type"),
])
def test_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QuantizeConfig(**kwargs)


def test_defaults_are_auto():
    c = QuantizeConfig()
    assert (c.mode, c.method, c.format, c.activation_type, c.metric, c.per_channel) == \
        ("auto", "auto", "auto", "auto", "auto", None)
    assert QuantizeConfig(exclude=["a", "b"]).exclude == ("a", "b")
