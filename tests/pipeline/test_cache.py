"""Stage folders: complete only with their marker, keyed by content hash; leftovers of killed builds removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edgecompress.pipeline.cache import MARKER, StageDir, clean_leftovers, path_hash, stage_key


def test_key_changes_with_config_inputs_and_is_order_free():
    k = stage_key("prune", {"ratio": 0.25, "samples": 8}, {"model": "aa", "data": "bb"})
    assert k == stage_key("prune", {"samples": 8, "ratio": 0.25}, {"data": "bb", "model": "aa"})
    assert k != stage_key("prune", {"ratio": 0.3, "samples": 8}, {"model": "aa", "data": "bb"})
    assert k != stage_key("prune", {"ratio": 0.25, "samples": 8}, {"model": "ab", "data": "bb"})
    assert k != stage_key("quantize", {"ratio": 0.25, "samples": 8}, {"model": "aa", "data": "bb"})


def test_build_then_load(tmp_path):
    sd = StageDir(tmp_path / "stages", 2, "prune")
    assert sd.load("k1") is None
    with sd.build("k1") as (work, record):
        (work / "model.onnx").write_bytes(b"onnx")
        record["artifact"] = {"file": "model.onnx", "format": "onnx"}
    rec = sd.load("k1")
    assert rec["artifact"]["file"] == "model.onnx" and rec["files"]["model.onnx"]
    assert (sd.path / MARKER).is_file() and sd.path.name == "2-prune"
    assert sd.load("k2") is None  # another key: not reusable
    (sd.path / "model.onnx").unlink()
    assert sd.load("k1") is None  # a listed file is gone: not complete


def test_failed_build_keeps_the_previous_folder(tmp_path):
    sd = StageDir(tmp_path / "stages", 1, "export")
    with sd.build("k1") as (work, _):
        (work / "a").write_text("1")
    with pytest.raises(RuntimeError), sd.build("k2") as (work, _):
        (work / "a").write_text("2")
        raise RuntimeError("stage failed")
    assert sd.load("k1") is not None and (sd.path / "a").read_text() == "1"
    assert [p.name for p in (tmp_path / "stages").iterdir()] == ["1-export"]


def test_sigkill_mid_build_leaves_no_complete_folder(tmp_path):
    """A real process killed while building a stage folder: the next run sees nothing complete, and cleans up."""
    root = tmp_path / "stages"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from edgecompress.pipeline.cache import StageDir
        sd = StageDir(Path({str(root)!r}), 3, "quantize")
        with sd.build("k") as (work, record):
            (work / "model.onnx").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert StageDir(root, 3, "quantize").load("k") is None
    leftovers = [p.name for p in root.iterdir()]
    assert leftovers and all(n.startswith(".3-quantize.") for n in leftovers)
    assert clean_leftovers(root) == leftovers
    assert list(root.iterdir()) == []


def test_marker_is_valid_json_with_the_key(tmp_path):
    sd = StageDir(tmp_path, 1, "bench")
    with sd.build("abc") as (_work, record):
        record["report"] = {"p50": 1.0}
    data = json.loads((sd.path / MARKER).read_text())
    assert data["key"] == "abc" and data["stage"] == "bench" and data["report"] == {"p50": 1.0}
    assert oct(os.stat(sd.path).st_mode & 0o777) == "0o755"


def test_path_hash_of_folder_depends_on_names_and_bytes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.npz").write_bytes(b"1")
    h1 = path_hash(tmp_path / "d")
    (tmp_path / "d" / "a.npz").write_bytes(b"2")
    assert path_hash(tmp_path / "d") != h1
