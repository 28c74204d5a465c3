"""Target profiles: the shipped ones load, `host` is detected, malformed profiles name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecompress.cli import cli
from edgecompress.errors import TargetError
from edgecompress.targets import get_target, host_profile, is_host_compatible, list_targets, targets_dir

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
name = "board"
arch = "arm64"
isa = ["neon", "neon_dotprod"]
execution_providers = ["XnnpackExecutionProvider", "CPUExecutionProvider"]
threads = 4
[quantization]
format = "qdq"
activation_type = "int8"
weight_type = "int8"
per_channel = true
reduce_range = false
[opset]
min = 13
max = 21
[pruning]
round_to = 4
[budgets]
max_size_mb = 10
max_p90_latency_ms = 20
max_accuracy_drop = 0.01
"""


def test_shipped_profiles_cover_the_issue():
    names = {p.name for p in list_targets()}
    assert {"host", "x86_64-avx512vnni", "x86_64-avx2", "rpi4-cortex-a72", "rpi5-cortex-a76", "android-arm64",
            "ios-arm64"} <= names
    assert targets_dir() == ROOT / "targets"
    a72, a76 = get_target("rpi4-cortex-a72"), get_target("rpi5-cortex-a76")
    assert "neon_dotprod" not in a72.isa and "neon_dotprod" in a76.isa
    android = get_target("android-arm64")
    assert android.execution_providers[:2] == ("XnnpackExecutionProvider", "NnapiExecutionProvider")
    assert android.execution_providers[-1] == "CPUExecutionProvider" and android.mobile_ep == "NnapiExecutionProvider"
    ios = get_target("ios-arm64")
    assert ios.execution_providers == ("CoreMLExecutionProvider", "CPUExecutionProvider")
    avx2 = get_target("x86_64-avx2")
    assert "avx512_vnni" not in avx2.isa


def test_every_quantization_preference_has_a_comment():
    for f in sorted((ROOT / "targets").glob("*.toml")):
        lines = f.read_text().splitlines()
        start = lines.index("[quantization]")
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        for ln in lines[start + 1:end]:
            if "=" in ln:
                assert "#" in ln, f"{f.name}: {ln!r} has no source/measurement comment"


def test_host_profile():
    h = get_target(None)
    assert h.is_host and h.name == "host" and get_target("host") == h == host_profile()
    assert is_host_compatible(h)
    assert h.arch in ("x86_64", "arm64")


def test_target_by_path(tmp_path):
    p = tmp_path / "board.toml"
    p.write_text(GOOD)
    t = get_target(str(p))
    assert t.name == "board" and t.threads == 4 and t.quantization.activation_type == "int8"
    assert t.budgets.max_p90_latency_ms == 20 and t.round_to == 4
    json.dumps(t.to_dict())


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


BAD = [
    ('arch = "arm64"', 'arch = "riscv"', "arch"),
    ('isa = ["neon", "neon_dotprod"]', 'isa = ["neon", "sve9"]', "isa"),
    ('isa = ["neon", "neon_dotprod"]', 'isa = "neon"', "isa"),
    ('execution_providers = ["XnnpackExecutionProvider", "CPUExecutionProvider"]', 'execution_providers = ["Foo"]',
     "execution_providers"),
    ('execution_providers = ["XnnpackExecutionProvider", "CPUExecutionProvider"]', "execution_providers = [1]",
     "execution_providers"),
    ("threads = 4", "threads = -1", "threads"),
    ("threads = 4", 'threads = "four"', "threads"),
    ("threads = 4", "threads = true", "threads"),
    ('format = "qdq"', 'format = "fp8"', "quantization.format"),
    ('activation_type = "int8"', 'activation_type = "int4"', "quantization.activation_type"),
    ('weight_type = "int8"', 'weight_type = "float"', "quantization.weight_type"),
    ("per_channel = true", 'per_channel = "yes"', "quantization.per_channel"),
    ("reduce_range = false", "reduce_range = 0", "quantization.reduce_range"),
    ("reduce_range = false", "reduce_range = false\nbits = 8", "quantization.bits"),
    ("min = 13", "min = 3", "opset.min"),
    ("max = 21", "max = 12", "opset.min"),
    ("round_to = 4", "round_to = 0", "pruning.round_to"),
    ("max_size_mb = 10", "max_size_mb = -1", "budgets.max_size_mb"),
    ("max_p90_latency_ms = 20", 'max_p90_latency_ms = "fast"', "budgets.max_p90_latency_ms"),
    ("max_accuracy_drop = 0.01", "max_accuracy_drop = 5", "budgets.max_accuracy_drop"),
    ('name = "board"', 'name = ""', "name"),
    ('name = "board"', "name = 3", "name"),
    ('name = "board"', 'colour = "red"', "colour"),
    ("[pruning]", "pruning = 3\n[pruning_x]", "pruning"),
    ('arch = "arm64"', 'arch = "arm64', "malformed TOML"),
]


@pytest.mark.parametrize("old,new,field", BAD, ids=[b[2] + "-" + b[1][:20] for b in BAD])
def test_malformed_profile_names_the_field(tmp_path, old, new, field):
    p = tmp_path / "bad.toml"
    p.write_text(_replace(GOOD, old, new))
    with pytest.raises(TargetError, match=field):
        get_target(str(p))


def test_missing_name_and_unknown_target(tmp_path):
    p = tmp_path / "noname.toml"
    p.write_text(GOOD.replace('name = "board"\n', ""))
    with pytest.raises(TargetError, match="name"):
        get_target(str(p))
    with pytest.raises(TargetError, match="unknown target 'nope'.*host"):
        get_target("nope")
    with pytest.raises(TargetError, match="not found"):
        get_target(str(tmp_path / "absent.toml"))
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TargetError, match="bin.toml"):
        get_target(str(tmp_path / "bin.toml"))


def test_targets_cli(tmp_path):
    r = CliRunner().invoke(cli, ["targets", "--json"])
    assert r.exit_code == 0
    names = [t["name"] for t in json.loads(r.stdout)["targets"]]
    assert names[0] == "host" and len(names) >= 7
    r = CliRunner().invoke(cli, ["targets"])
    assert r.exit_code == 0 and "rpi5-cortex-a76" in r.stderr
    p = tmp_path / "bad.toml"
    p.write_text(_replace(GOOD, "threads = 4", "threads = -2"))
    r = CliRunner().invoke(cli, ["targets", str(p)])
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "threads" in r.stderr
    assert "Traceback" not in r.stderr
