"""Recipe -> typed configs: every key checked against the stage's config dataclass, files, target."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgecompress.errors import ConfigError, InputError, TargetError
from edgecompress.pipeline import load_recipe, parse_recipe
from edgecompress.pipeline.demo import demo_recipe, demo_table
from edgecompress.pipeline.dump import dump_recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data"


def base() -> dict:
    return {
        "model": {"source": str(ROOT / "examples/mnist_models.py:student")},
        "data": {"calibration": str(DATA / "mnist_calibration.npz"), "eval": str(DATA / "mnist_eval.npz")},
        "export": {"inputs": ["input:1x1x28x28"]},
        "quantize": {},
        "package": {},
    }


def with_(path: str, value) -> dict:
    d = base()
    *heads, last = path.split(".")
    node = d
    for h in heads:
        node = node.setdefault(h, {})
    node[last] = value
    return d


def test_base_recipe_maps_tables_onto_configs(tmp_path):
    r = parse_recipe(base(), base_dir=tmp_path)
    assert r.stage_names == ("export", "quantize", "package")
    from edgecompress.export import ExportConfig
    from edgecompress.quantize import QuantizeConfig

    assert isinstance(r.config("export"), ExportConfig)
    assert r.config("export").inputs == ("input:1x1x28x28",)  # TOML array -> tuple
    assert isinstance(r.config("quantize"), QuantizeConfig)
    assert r.target.is_host


def test_quantize_weights_is_a_format_not_a_file(tmp_path):
    """[quantize] weights = "int4" names a format (fields ending in _weights, like teacher_weights, are files)."""
    r = parse_recipe(with_("quantize.weights", "int4"), base_dir=tmp_path)
    assert r.config("quantize").weights == "int4"
    with pytest.raises(ConfigError, match="weights must be one of int8, int4"):
        parse_recipe(with_("quantize.weights", "int3"), base_dir=tmp_path)


@pytest.mark.parametrize("path, value, match", [
    ("quantize.calibrate_with", 3, r"unknown key quantize\.calibrate_with.*allowed: mode, method"),
    ("export.input", ["x:1"], r"unknown key export\.input\b.*allowed: inputs"),
    ("package.nme", "x", r"unknown key package\.nme.*allowed: name, version"),
    ("model.path", "x", r"unknown key model\.path.*allowed: source, weights"),
    ("data.calib", "x", r"unknown key data\.calib.*allowed: train, val, calibration, eval"),
    ("stages", {}, r"unknown key 'stages'.*allowed: target, model, data, train, distill"),
])
def test_unknown_key_names_it_and_lists_allowed(tmp_path, path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_recipe(with_(path, value), base_dir=tmp_path)


@pytest.mark.parametrize("path, value, match", [
    ("quantize.max_drop", "1%", r"quantize\.max_drop: expected a number, got string '1%'"),
    ("quantize.per_channel", 1, r"quantize\.per_channel: expected true or false"),
    ("export.inputs", "input:1x1x28x28", r"export\.inputs: expected a list of strings"),
    ("export.samples", 2.5, r"export\.samples: expected an integer"),
    ("package.tarball", "yes", r"package\.tarball: expected true or false"),
    ("quantize.mode", "fast", r"quantize\.mode must be one of auto, static, dynamic"),
    ("quantize", 3, r"quantize must be a table"),
    ("target", 5, r"target: expected a string"),
    ("data.image", {"size": [28]}, r"data\.image\.size: expected 2 values"),
])
def test_wrong_type_or_value_names_the_key(tmp_path, path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_recipe(with_(path, value), base_dir=tmp_path)


@pytest.mark.parametrize("path, value, name", [
    ("data.calibration", "nope/calib.npz", "nope/calib.npz"),
    ("model.source", "missing_model.py:net", "missing_model.py"),
    ("model.source", "gone.onnx", "gone.onnx"),
    ("model.weights", "w.pt", "w.pt"),
    ("export.weights", "student.pt", "student.pt"),
])
def test_missing_file_names_it(tmp_path, path, value, name):
    with pytest.raises(InputError, match=rf"{path.replace('.', chr(92) + '.')}: file not found: .*{name}"):
        parse_recipe(with_(path, value), base_dir=tmp_path)


def test_relative_paths_are_relative_to_the_recipe(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "net.py").write_text("def net():\n    pass\n")
    d = base()
    d["model"]["source"] = "net.py:net"
    (tmp_path / "sub" / "r.toml").write_text(_toml(d))
    r = load_recipe(tmp_path / "sub" / "r.toml")
    assert r.model.source == f"{tmp_path / 'sub' / 'net.py'}:net"


def _toml(d: dict) -> str:
    import json

    lines = []
    for k, v in d.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def test_unknown_target_names_it(tmp_path):
    with pytest.raises(TargetError, match=r"unknown target 'pi9'; known: host, android-arm64"):
        parse_recipe(with_("target", "pi9"), base_dir=tmp_path)
    with pytest.raises(TargetError, match="unknown target 'pi9'"):
        parse_recipe(base(), base_dir=tmp_path, target="pi9")
    assert parse_recipe(base(), base_dir=tmp_path, target="rpi5-cortex-a76").target.name == "rpi5-cortex-a76"


@pytest.mark.parametrize("drop, change, match", [
    ("package", None, r"no \[package\] table"),
    ("export", None, r"needs an \[export\] table"),
    (None, ("train", {}), r"\[train\] needs data\.train"),
    (None, ("model", {"source": str(ROOT / "examples/mnist_models.py:student"), "path": 1}), "model.path"),
])
def test_plan_rules(tmp_path, drop, change, match):
    d = base()
    if drop:
        del d[drop]
    if change:
        d[change[0]] = change[1]
    with pytest.raises(ConfigError, match=match):
        parse_recipe(d, base_dir=tmp_path)


def test_torch_stage_on_onnx_source_is_refused(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    d = base()
    d["model"] = {"source": str(model)}
    with pytest.raises(ConfigError, match=r"\[export\] needs a PyTorch model"):
        parse_recipe(d, base_dir=tmp_path)
    del d["export"]
    assert parse_recipe(d, base_dir=tmp_path).stage_names == ("quantize", "package")


def test_demo_recipe_is_valid():
    r = demo_recipe()
    assert r.stage_names == ("distill", "export", "prune", "quantize", "bench", "package")
    d = r.config("distill")
    assert d.teacher.endswith("examples/mnist_models.py:teacher_deep")  # filled from [model]
    assert Path(d.teacher_weights).is_file() and d.teacher_weights.endswith("examples/weights/mnist_teacher.pt")
    assert not r.config("quantize").allow_slower


def test_dump_recipe_has_every_key_and_parses_back(tmp_path):
    demo = demo_table()
    text = dump_recipe(model=demo["model"], data=demo["data"], examples=demo)
    from edgecompress.pipeline.registry import STAGE_NAMES, config_class
    from edgecompress.pipeline.typed import config_defaults

    for stage in STAGE_NAMES:
        assert f"\n[{stage}]\n" in text
        for key in config_defaults(config_class(stage)):
            assert f"\n{key} = " in text or f"\n# {key} = " in text, (stage, key)
    parsed = tomllib.loads(text)
    r = parse_recipe(parsed, base_dir=ROOT)
    assert r.stage_names == STAGE_NAMES
    assert r.config("bench") == type(r.config("bench"))()  # every default
