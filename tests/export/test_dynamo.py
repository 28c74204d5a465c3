"""The default export path (the dynamo exporter) and its TorchScript fallback. Slower than the rest of the
export tests (the dynamo exporter takes seconds per model), so kept to two models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgecompress.export import ExportConfig, export
from edgecompress.onnxgraph.io import input_specs

ENCODER = """
import torch
from examples.zoo import SeqEncoder

def encoder():
    torch.manual_seed(0)
    return SeqEncoder(features=16, hidden=32, heads=4, layers=2)
"""


@pytest.fixture
def models_py(tmp_path):
    p = tmp_path / "models.py"
    p.write_text(ENCODER)
    return p

DATA_DEPENDENT = """
import torch

class DataDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        k = int(x.abs().sum().item() * 0) + 2  # .item() and a data-dependent branch: torch.export fails
        return self.fc(x)[:, :k] if bool(x.sum() > -1e9) else self.fc(x)

def dd():
    torch.manual_seed(0)
    return DataDependent()
"""


def test_parity_transformer_dynamic_seq_dynamo_and_data(models_py, tmp_path):
    """The default path: dynamo exporter, named dynamic batch + seq, plus parity on a folder of .npz feeds."""
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    rng = np.random.default_rng(1)
    for i, seq in enumerate((4, 7, 12)):
        np.savez(feeds / f"{i:03d}.npz", x=rng.standard_normal((1, seq, 16)).astype(np.float32))
    cfg = ExportConfig(inputs=("x:batchxseq=8x16",), exporter="auto")
    res = export(f"{models_py}:encoder", cfg, out=tmp_path / "enc.onnx", data=str(feeds))
    rep = res.report
    assert rep.exporter == "dynamo" and rep.notices == []
    assert [p.kind for p in rep.parity] == ["random", "data"]
    assert rep.parity[1].samples == 3 and len(rep.parity[1].shapes) == 3
    assert rep.max_error_rel_to_scale <= 1e-4
    assert input_specs(onnx.load(str(res.artifact.path)))[0].shape == ("batch", "seq", 16)
    assert "torchvision" not in str(rep.to_dict())  # exporter chatter kept out of the report dict



def test_dynamo_failure_falls_back_to_torchscript_with_notice(tmp_path, monkeypatch, capfd):
    (tmp_path / "dd.py").write_text(DATA_DEPENDENT)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    res = export(f"{tmp_path}/dd.py:dd", ExportConfig(inputs=("x:1x8",)), out=tmp_path / "dd.onnx")
    rep = res.report
    assert rep.exporter == "torchscript"
    assert len(rep.notices) == 1 and "fell back to the TorchScript exporter" in rep.notices[0]
    assert "GuardOnDataDependentSymNode" in rep.notices[0] and "\x1b" not in rep.notices[0]
    assert rep.max_error_rel_to_scale <= 1e-4 and rep.outputs[0]["shape"] == [1, 2]
    assert "torch.export" in rep.log  # the exporter's chatter was captured, not printed
    assert list(work.iterdir()) == []
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing reached the terminal


TWO_LINEAR = """
import torch

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.fc2 = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc(x)))

def m():
    torch.manual_seed(0)
    return M()
"""


def test_output_name_colliding_with_internal_value_is_fixed(tmp_path):
    """The dynamo exporter names the first Linear's output `linear`; asking for an output called `linear` then
    defines the name twice and ONNX Runtime refuses the raw file ("Duplicate definition of name (linear)")."""
    import onnxruntime as ort

    (tmp_path / "two.py").write_text(TWO_LINEAR)
    cfg = ExportConfig(inputs=("x:1x4",), output_names=("linear",), exporter="dynamo")
    res = export(f"{tmp_path}/two.py:m", cfg, out=tmp_path / "two.onnx")
    rep = res.report
    assert len(rep.fixes) == 1 and "'linear' renamed to 'linear__1'" in rep.fixes[0]
    assert rep.outputs[0]["name"] == "linear" and rep.max_error_rel_to_scale <= 1e-4
    sess = ort.InferenceSession(str(res.artifact.path))
    assert [o.name for o in sess.get_outputs()] == ["linear"]


def test_exporter_debug_metadata_is_dropped_unless_asked(tmp_path):
    """The dynamo exporter writes stack traces and module paths into every node (~1.8 kB each); the export
    drops them by default (same outputs, smaller file) and keeps them with debug_metadata."""
    import onnxruntime as ort

    spec = "examples/mnist_models.py:student_small"
    lean = export(spec, ExportConfig(inputs=("input:1x1x28x28",), exporter="dynamo"), out=tmp_path / "lean.onnx")
    full = export(spec, ExportConfig(inputs=("input:1x1x28x28",), exporter="dynamo", debug_metadata=True),
                  out=tmp_path / "full.onnx")
    a, b = onnx.load(str(lean.artifact.path)), onnx.load(str(full.artifact.path))
    assert not any(n.metadata_props for n in a.graph.node)
    assert sum(len(n.metadata_props) for n in b.graph.node) >= len(b.graph.node)
    assert lean.report.size_bytes < 0.8 * full.report.size_bytes
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28), dtype=np.float32)
    outs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            for p in (lean.artifact.path, full.artifact.path)]
    np.testing.assert_array_equal(outs[0], outs[1])
