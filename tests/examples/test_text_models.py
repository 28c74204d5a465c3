"""examples/text_models.py (TinyGPT with a KV cache) and scripts/train_text_decoder.py, on the tiny config (CPU).

Export with dynamic `seq` / `past`, ONNX Runtime == PyTorch with an empty past, a one-token decode step == the
last position of the full run (KV cache), causality, and a short real training run that lowers the loss.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgecompress.data import load_data
from edgecompress.export import ExportConfig, export
from edgecompress.onnxgraph.io import input_specs
from edgecompress.onnxgraph.runtime import make_session
from examples.text_models import TINY, TinyGPT, decoder_tiny, empty_past

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_text_decoder.py"
TEXT = (b"def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n" * 4)


def _script():
    spec = importlib.util.spec_from_file_location("train_text_decoder", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ids(n: int, offset: int = 0) -> np.ndarray:
    return np.frombuffer(TEXT[offset:offset + n], dtype=np.uint8).astype(np.int64)[None]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "tiny.onnx"
    cfg = ExportConfig(inputs=("input_ids:1xseq=8:int64", "past:1x2x2x2xpast=8x32"),
                       output_names=("logits", "present"))
    res = export(f"{ROOT / 'examples' / 'text_models.py'}:decoder_tiny", cfg, out=out)
    return res, make_session(str(out), threads=1)


def _torch(ids: np.ndarray, past: np.ndarray):
    with torch.no_grad():
        lg, pr = decoder_tiny().eval()(torch.from_numpy(ids), torch.from_numpy(past))
    return lg.numpy(), pr.numpy()


def test_export_keeps_seq_and_past_dynamic(exported):
    res, _ = exported
    assert res.report.ok and res.report.max_error_rel_to_scale <= 1e-4
    m = onnx.load(str(res.artifact.path))
    specs = {s.name: s.shape for s in input_specs(m)}
    assert specs == {"input_ids": (1, "seq"), "past": (1, 2, 2, 2, "past", 32)}
    assert [o.name for o in m.graph.output] == ["logits", "present"]
    ops = {n.op_type for n in m.graph.node}
    assert {"MatMul", "Softmax"} <= ops
    assert [s["past"][4] for s in res.report.parity[0].shapes] == [8, 9, 11]  # several cache lengths checked


def test_ort_matches_torch_with_empty_past(exported):
    _, sess = exported
    ids, past = _ids(8), empty_past(TINY)
    assert past.shape == (1, 2, 2, 2, 0, 32)
    lg, pr = sess.run(None, {"input_ids": ids, "past": past})
    ref_lg, ref_pr = _torch(ids, past)
    assert lg.shape == (1, 8, 256) and pr.shape == (1, 2, 2, 2, 8, 32)
    assert np.abs(lg - ref_lg).max() <= 1e-4 * np.abs(ref_lg).max()
    assert np.abs(pr - ref_pr).max() <= 1e-4 * np.abs(ref_pr).max()


def test_decode_step_with_cache_matches_full_run(exported):
    _, sess = exported
    ids9 = _ids(9)
    full_lg, full_pr = sess.run(None, {"input_ids": ids9, "past": empty_past(TINY)})
    _, cache = sess.run(None, {"input_ids": ids9[:, :8], "past": empty_past(TINY)})
    step_lg, step_pr = sess.run(None, {"input_ids": ids9[:, 8:], "past": cache})  # P=8, S=1
    assert step_lg.shape == (1, 1, 256) and step_pr.shape == (1, 2, 2, 2, 9, 32)
    scale = np.abs(full_lg).max()
    assert np.abs(step_lg[:, 0] - full_lg[:, 8]).max() <= 1e-4 * scale
    assert np.abs(step_pr - full_pr).max() <= 1e-4 * np.abs(full_pr).max()
    # the step really reads the cache: a zeroed cache of the same length gives other logits
    wrong, _ = sess.run(None, {"input_ids": ids9[:, 8:], "past": np.zeros_like(cache)})
    assert np.abs(wrong[:, 0] - full_lg[:, 8]).max() > 1e-2 * scale
    # and the same decode step in PyTorch agrees
    ref_lg, _ = _torch(ids9[:, 8:], cache)
    assert np.abs(step_lg - ref_lg).max() <= 1e-4 * scale


def test_causal_mask():
    model = decoder_tiny().eval()
    a, b = _ids(12), _ids(12).copy()
    b[:, 6:] = (b[:, 6:] + 17) % 256  # change the future
    with torch.no_grad():
        la, _ = model(torch.from_numpy(a), torch.from_numpy(empty_past(model)))
        lb, _ = model(torch.from_numpy(b), torch.from_numpy(empty_past(model)))
    assert torch.allclose(la[:, :6], lb[:, :6], atol=1e-6)
    assert (la[:, 6:] - lb[:, 6:]).abs().max() > 1e-3


def test_corpus_splits_by_file_and_skips_site_packages(tmp_path):
    mod = _script()
    for i in range(60):
        (tmp_path / "pkg" if i % 2 else tmp_path).mkdir(exist_ok=True)
        ((tmp_path / "pkg" if i % 2 else tmp_path) / f"m{i}.py").write_bytes(f"x{i} = {i}\n".encode())
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "skip.py").write_bytes(b"SKIPPED\n")
    c = mod.build_corpus(tmp_path)
    want = {s: b"" for s in mod.SPLITS}
    for rel in sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("m*.py")):
        want[mod.split_of(rel)] += (tmp_path / rel).read_bytes()
    assert {s: c[s].tobytes() for s in mod.SPLITS} == want
    assert c["files"].sum() == 60 and b"SKIPPED" not in b"".join(want.values())
    # sha1 of the path, not Python's salted hash(): the same split on every machine and run
    assert [mod.split_of(r) for r in ("json/decoder.py", "base64.py", "calendar.py", "copy.py")] == \
        ["train", "eval", "calibration", "eval"]


def _tiny_corpus(path: Path) -> None:
    """Real text: a few stdlib modules (train), another for calibration, another held out."""
    std = Path(sysconfig.get_paths()["stdlib"])
    train = b"".join((std / f).read_bytes() for f in ("argparse.py", "textwrap.py", "shlex.py"))
    np.savez(path, train=np.frombuffer(train, np.uint8), calibration=np.frombuffer((std / "string.py").read_bytes(),
             np.uint8), eval=np.frombuffer((std / "fnmatch.py").read_bytes(), np.uint8),
             files=np.array([3, 1, 1]), source=np.array("test"))


def test_short_training_run_lowers_loss_and_writes_feed_data(tmp_path, exported):
    corpus = tmp_path / "corpus.npz"
    _tiny_corpus(corpus)
    s = _script().main(["--corpus", str(corpus), "--config", "tiny", "--steps", "30", "--batch", "16",
                        "--lr", "3e-3", "--device", "cpu", "--threads", "1", "--log-every", "30",
                        "--eval-windows", "16", "--eval-windows-quick", "8", "--out", str(tmp_path / "d.pt"),
                        "--half", "--parts", "2", "--data-dir", str(tmp_path)])
    assert s["init_eval_nats"] > 5.0  # about ln 256 = 5.55 at init
    assert s["eval_nats"] < s["init_eval_nats"] - 1.0  # held-out text, not seen in training
    assert s["last_train_loss"] < s["first_train_loss"] - 1.0
    parts = [tmp_path / "d.part0.pt", tmp_path / "d.part1.pt"]
    half = [torch.load(p, weights_only=True) for p in parts]
    assert all(v.dtype == torch.float16 for sd in half for v in sd.values() if v.is_floating_point())
    _script().main(["--join", *map(str, parts), "--out", str(tmp_path / "d.pt")])
    sd = torch.load(tmp_path / "d.pt", weights_only=True)
    assert set(sd) == set(half[0]) | set(half[1]) and all(v.dtype == torch.float32 for v in sd.values())
    TinyGPT(TINY).load_state_dict(sd)
    _, sess = exported
    for split in ("calibration", "eval"):
        z = np.load(tmp_path / f"pytext_{split}.npz")
        assert z["input_ids"].shape == (128, 128) and z["input_ids"].dtype == np.int64
        assert z["past"].shape == (128, 2, 2, 2, 0, 32) and z["past"].dtype == np.float32
        lg, _ = sess.run(None, {"input_ids": z["input_ids"][:1], "past": z["past"][:1]})
        assert lg.shape == (1, 128, 256)


def test_feed_data_with_empty_past_validates(tmp_path, exported):
    res, _ = exported
    corpus = tmp_path / "corpus.npz"
    _tiny_corpus(corpus)
    mod = _script()
    mod.write_feed_data(mod.load_corpus(corpus), decoder_tiny(), tmp_path, n=4)
    fd = load_data(tmp_path / "pytext_eval.npz").validated(input_specs(onnx.load(str(res.artifact.path))))
    feeds = list(fd)
    assert len(feeds) == 4 and feeds[0]["past"].shape[4] == 0 and feeds[0]["input_ids"].size > 0
